package storage

import (
	"sort"
	"testing"

	"github.com/moltbot/moltbot"
)

// The sweep of dead tenant lives deletes whole spaces, exactly: not a space
// whose name extends the dead one ("a" is not "ab" nor "a:x").
func TestDeleteSpaces(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for name, st := range map[string]interface {
		Store
		DeleteSpaces(func(string) bool) (int, error)
	}{"pebble": p, "memory": NewMemory()} {
		t.Run(name, func(t *testing.T) {
			spaces := []string{"a", "a:x", "ab", "a.b", "b"}
			for _, sp := range spaces {
				for _, id := range []string{"c1", "c2", "c3"} {
					if err := st.Put(&moltbot.Conversation{Tenant: sp, ID: id}, false); err != nil {
						t.Fatal(err)
					}
				}
			}
			var asked []string
			n, err := st.DeleteSpaces(func(sp string) bool {
				asked = append(asked, sp)
				return sp == "a" || sp == "b"
			})
			sort.Strings(asked)
			if err != nil || n != 6 || len(asked) != len(spaces) {
				t.Fatalf("deleted %d, %v; asked about %v", n, err, asked)
			}
			left := map[string]int{}
			st.ForEach(func(c *moltbot.Conversation) bool { left[c.Tenant]++; return true })
			if len(left) != 3 || left["a:x"] != 3 || left["ab"] != 3 || left["a.b"] != 3 {
				t.Fatalf("left %v", left)
			}
			if n, err := st.DeleteSpaces(func(string) bool { return false }); n != 0 || err != nil {
				t.Fatalf("nothing dead: %d %v", n, err)
			}
		})
	}
}
