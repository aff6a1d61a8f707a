package skills

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

// context.search(kb, query, k) asks Config.Search for the turn (its
// tenant) and hands the skill the chunks as objects; bad arguments throw
// in the skill; a node without knowledge bases fails the run saying so.
func TestSearch(t *testing.T) {
	files := map[string]string{"ask.js": "module.exports = {name: 'ask', patterns: [/^ask (\\S+) (.+)$/], handler: async (c) => {\n" +
		"  const r = await c.search(c.matches[1], c.matches[2], 2);\n" +
		"  if (r.length === 0) return 'nothing';\n" +
		"  return r.map(x => `[${x.n}] ${x.document} / ${x.heading}: ${x.snippet}`).join('\\n') }};",
		"bad.js": "module.exports = {name: 'bad', patterns: [/^bad (.+)$/], handler: async (c) => {\n" +
			"  const a = c.matches[1];\n" +
			"  try { if (a == 'k') await c.search('kb', 'q', 99); else if (a == 'q') await c.search('kb', ''); else await c.search(42, 'q'); } catch (e) { return 'threw: ' + e.message }\n" +
			"  return 'no throw' }};"}
	var asked []string
	search := func(_ context.Context, t *moltbot.Turn, kb, query string, k int) ([]moltbot.Citation, error) {
		asked = append(asked, t.Tenant+"|"+kb+"|"+query+"|"+string(rune('0'+k)))
		if kb == "none" {
			return nil, errors.New(`knowledge base "none" not found`)
		}
		if kb == "empty" {
			return nil, nil
		}
		return []moltbot.Citation{{N: 1, KB: kb, Document: "returns.md", Heading: "Refunds", Chunk: "returns.md#1", Score: 2.5, Snippet: "5 to 10 days"}}, nil
	}
	e := startWith(t, files, Config{Deadline: 10 * time.Second, Search: search})
	res, _, err := e.turn(t, "ask support how long is a refund")
	if err != nil || res.Message.Content != "[1] returns.md / Refunds: 5 to 10 days" {
		t.Fatalf("reply %v %v", res, err)
	}
	if len(asked) != 1 || asked[0] != "acme|support|how long is a refund|2" {
		t.Fatalf("asked %q", asked)
	}
	if res, _, err := e.turn(t, "ask empty x"); err != nil || res.Message.Content != "nothing" {
		t.Fatalf("an empty answer: %v %v", res, err)
	}
	if _, _, err := e.turn(t, "ask none x"); err == nil || !strings.Contains(err.Error(), `context.search: knowledge base "none" not found`) {
		t.Fatalf("a failed search: %v", err)
	}
	for arg, want := range map[string]string{"k": "search: k must be 1 to 16", "q": "search: the query must be 1 to", "n": "search: the knowledge base's name must be a string"} {
		if res, _, err := e.turn(t, "bad "+arg); err != nil || !strings.Contains(res.Message.Content, "threw: ") || !strings.Contains(res.Message.Content, want) {
			t.Errorf("bad %s: %v %v", arg, res, err)
		}
	}
	e = start(t, files, 10*time.Second)
	if _, _, err := e.turn(t, "ask support x"); err == nil || !strings.Contains(err.Error(), "context.search: this node has no knowledge bases") {
		t.Fatalf("no search: %v", err)
	}
}
