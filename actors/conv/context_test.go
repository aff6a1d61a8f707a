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

// Tool calls and results count in the budget and keep their parts; a
// context never starts with a tool result, and one whose last result
// cannot have its call with it does not fit.
func TestBuildContextTools(t *testing.T) {
	u := msg(moltbot.RoleUser, 10)
	call := moltbot.Message{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c1", Name: "f", Arguments: strings.Repeat("a", 30)}}}
	res := moltbot.Message{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "c1", Content: strings.Repeat("r", 40)}}}
	img := moltbot.Message{Role: moltbot.RoleUser, Content: "x", Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "x"}, {Type: moltbot.PartImage, MIME: "image/png", Data: []byte{1}}}}
	if tokens(&call) != 4+4+(2+1+30+3)/4 || tokens(&res) != 4+4+(2+40+3)/4 || tokens(&img) != 5+imageTokens {
		t.Errorf("tokens: call %d result %d image %d", tokens(&call), tokens(&res), tokens(&img))
	}
	hist := []moltbot.Message{u, call, res, u}
	out, _, ok := buildContext("", hist, 1000)
	if !ok || roles(out) != "uatu" || out[1].Parts[0].CallID != "c1" || out[2].Parts[0].Content != res.Parts[0].Content {
		t.Errorf("%q %+v", roles(out), out)
	}
	// Room for the result and the last message, not the call: the result goes too.
	out, _, ok = buildContext("", hist, tokens(&res)+tokens(&u))
	if !ok || roles(out) != "u" {
		t.Errorf("%q", roles(out))
	}
	// The result is last and its call does not fit.
	if _, _, ok := buildContext("", hist[:3], tokens(&res)+1); ok {
		t.Errorf("a result without its call fits")
	}
	if out, _, ok := buildContext("", hist[:3], 1000); !ok || roles(out) != "uat" {
		t.Errorf("%q", roles(out))
	}
}
