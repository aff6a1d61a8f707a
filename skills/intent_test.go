package skills

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
)

// noteIntent is a stand-in for the intent stage: it notes refund,
// confidently, for a message about money back, and refund, low, for one
// that says "maybe".
type noteIntent struct{}

func (noteIntent) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	text := moltbot.LastUserText(t.Messages)
	if strings.Contains(text, "money back") {
		t.Note("intent", "refund")
		if strings.Contains(text, "maybe") {
			t.Note("intent.low", "true")
		}
	}
	return nil, nil
}

// A skill that exports intent: and no patterns runs on a turn whose
// recognized intent it names, with the whole message as matches[0]; a
// low-confidence intent does not select it.
func TestIntentSelectsSkill(t *testing.T) {
	src := `module.exports = {
  name: 'refunds',
  intent: 'refund',
  handler: async (context) => 'refund desk: ' + context.matches[0],
};`
	e := startWith(t, map[string]string{"refunds.js": src}, Config{Deadline: 10 * time.Second}, func(c *actors.Config) {
		c.Before = append([]actors.BeforeModel{noteIntent{}}, c.Before...)
	})
	if got := e.sk.Skills(); len(got) != 1 || got[0].Intent != "refund" || len(got[0].Patterns) != 0 {
		t.Fatalf("%+v", got)
	}
	res, _, err := e.turn(t, "I want my money back")
	if err != nil {
		t.Fatal(err)
	}
	if res.Message.Content != "refund desk: I want my money back" {
		t.Fatalf("reply %q served by %+v", res.Message.Content, res.Completion.Served)
	}
	for _, text := range []string{"maybe money back", "hello"} {
		res, _, err = e.turn(t, text)
		if err != nil {
			t.Fatal(err)
		}
		if res.Completion.Served.Provider != "m" {
			t.Fatalf("%q went to %+v, want the model", text, res.Completion.Served)
		}
	}
}

func TestIntentExportChecked(t *testing.T) {
	cfg := Config{Dir: writeSkills(t, map[string]string{"bad.js": `module.exports = {name: 'bad', intent: 'Refund!', handler: () => ''};`}), Worker: buildWorker(t)}
	_, err := Open(cfg)
	if err == nil || !strings.Contains(err.Error(), "module.exports.intent: want an intent's name") {
		t.Fatalf("got %v", err)
	}
}
