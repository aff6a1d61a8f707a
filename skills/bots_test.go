package skills

import (
	"sync"
	"testing"

	"github.com/moltbot/moltbot"
)

// Bots are found by tenant and name, listed by tenant then name, and
// swapped whole while readers read.
func TestBots(t *testing.T) {
	var empty Bots
	if empty.Bot("a", "x") != nil || empty.List("") != nil || empty.Len() != 0 {
		t.Error("the zero value holds none")
	}
	b := NewBots([]*moltbot.Bot{{Name: "z", Tenant: "b"}, {Name: "y", Tenant: "a"}, {Name: "x", Tenant: "a"}})
	if b.Bot("a", "x") == nil || b.Bot("b", "x") != nil || b.Bot("a", "z") != nil {
		t.Error("by tenant and name")
	}
	var names []string
	for _, bot := range b.List("") {
		names = append(names, bot.Tenant+"/"+bot.Name)
	}
	if len(names) != 3 || names[0] != "a/x" || names[1] != "a/y" || names[2] != "b/z" {
		t.Errorf("list: %v", names)
	}
	if l := b.List("b"); len(l) != 1 || l[0].Name != "z" {
		t.Errorf("b's: %v", l)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 1000 {
			b.Bot("a", "x")
		}
	}()
	for range 100 {
		b.Set([]*moltbot.Bot{{Name: "x", Tenant: "a"}})
	}
	wg.Wait()
	if b.Len() != 1 || b.Bot("a", "y") != nil {
		t.Error("after a swap")
	}
}
