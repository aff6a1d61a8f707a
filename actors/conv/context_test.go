package conv

import (
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

func msg(role moltbot.Role, tokens int) moltbot.Message {
	// MessageTokens = 4 + ceil(len/4): content of 4*(tokens-4) bytes costs exactly tokens.
	return moltbot.Message{Role: role, Content: strings.Repeat("x", 4*(tokens-4))}
}

func roles(ms []moltbot.Message) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteByte(string(m.Role)[0])
	}
	return b.String()
}

func TestBuildContext(t *testing.T) {
	u, a := moltbot.RoleUser, moltbot.RoleAssistant
	hist := []moltbot.Message{msg(u, 10), msg(a, 10), msg(u, 10), msg(a, 10), msg(u, 10)}
	sys := strings.Repeat("s", 4*(10-4)) // 10 tokens
	cases := []struct {
		name    string
		system  string
		hist    []moltbot.Message
		budget  int
		want    string
		dropped int
		ok      bool
	}{
		{"all fits", "", hist, 100, "uauau", 0, true},
		{"all fits with system", sys, hist, 60, "suauau", 0, true},
		{"drop oldest turn", sys, hist, 40, "suau", 2, true},
		{"never start with assistant", sys, hist, 50, "suau", 2, true},
		{"only last", "", hist, 15, "u", 4, true},
		{"last too big", sys, hist, 15, "", 4, false},
		{"empty history", sys, nil, 20, "s", 0, true},
		{"nothing at all", "", nil, 20, "", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, dropped, ok := buildContext(tc.system, tc.hist, tc.budget)
			if roles(out) != tc.want || dropped != tc.dropped || ok != tc.ok {
				t.Errorf("got %q dropped %d ok %v; want %q %d %v", roles(out), dropped, ok, tc.want, tc.dropped, tc.ok)
			}
		})
	}
}
