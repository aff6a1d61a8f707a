package kb

import (
	"context"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

func turnOf(space string, bot *moltbot.Bot, text string) *moltbot.Turn {
	return &moltbot.Turn{Tenant: space, Bot: bot, Messages: []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: "You are Lumen's support bot."},
		{Role: moltbot.RoleUser, Content: text},
	}}
}

func TestStage(t *testing.T) {
	s := openStore(t, newMemKV())
	if err := s.Put("acme:1", "support", exampleDocs(t)); err != nil {
		t.Fatal(err)
	}
	bot := &moltbot.Bot{Name: "helper", Tenant: "acme", KnowledgeBases: []string{"support"}}
	st := NewStage(s, StageConfig{})
	ctx := context.Background()

	t.Run("hit", func(t *testing.T) {
		tr := turnOf("acme:1", bot, "退款多久到账？")
		orig := tr.Messages
		c, err := st.BeforeModel(ctx, tr, nil)
		if err != nil || c != nil {
			t.Fatalf("a hit answered itself: %v %v", c, err)
		}
		if tr.Notes[NoteHit] != "true" || tr.Notes[NoteScore] == "" {
			t.Fatalf("notes %v", tr.Notes)
		}
		if len(tr.Citations) == 0 || tr.Citations[0].Document != "zh-退货与退款.md" || tr.Citations[0].N != 1 || tr.Citations[0].KB != "support" {
			t.Fatalf("citations %+v", tr.Citations)
		}
		sys := tr.Messages[0].Content
		if !strings.HasPrefix(sys, "You are Lumen's support bot.") || !strings.Contains(sys, "[1] zh-退货与退款.md — 退货与退款 > 退款到账时间") {
			t.Fatalf("system message:\n%s", sys)
		}
		if orig[0].Content != "You are Lumen's support bot." {
			t.Fatalf("the conversation's messages were changed in place")
		}
	})
	t.Run("miss answers", func(t *testing.T) {
		tr := turnOf("acme:1", bot, "Who won the football world cup in 2018?")
		tr.Visible = true
		var streamed string
		c, err := st.BeforeModel(ctx, tr, func(ch moltbot.Chunk) error { streamed += ch.Content; return nil })
		if err != nil || c == nil || c.Content != DefaultNoAnswer || streamed != DefaultNoAnswer {
			t.Fatalf("a miss: %+v %v, streamed %q", c, err, streamed)
		}
		if tr.Notes[NoteHit] != "false" {
			t.Fatalf("notes %v", tr.Notes)
		}
	})
	t.Run("miss goes to the model", func(t *testing.T) {
		tr := turnOf("acme:1", bot, "Who won the football world cup in 2018?")
		c, err := NewStage(s, StageConfig{OnMiss: MissModel}).BeforeModel(ctx, tr, nil)
		if err != nil || c != nil || tr.Notes[NoteHit] != "false" || len(tr.Messages) != 2 || tr.Citations != nil {
			t.Fatalf("%+v %v %v", c, err, tr.Notes)
		}
	})
	t.Run("other tenant", func(t *testing.T) {
		tr := turnOf("acme:2", bot, "退款多久到账？") // the tenant made again: another space
		c, _ := st.BeforeModel(ctx, tr, nil)
		if c != nil || tr.Notes != nil || tr.Citations != nil || len(tr.Messages) != 2 {
			t.Fatalf("another space's turn found the documents, or a base it lacks answered: %v %v", c, tr.Notes)
		}
	})
	t.Run("no such base", func(t *testing.T) {
		tr := turnOf("acme:1", &moltbot.Bot{Name: "b", KnowledgeBases: []string{"missing"}}, "Who won the world cup?")
		if c, err := st.BeforeModel(ctx, tr, nil); c != nil || err != nil || tr.Notes != nil {
			t.Fatalf("a base without documents: %v %v %v", c, err, tr.Notes)
		}
	})
	t.Run("no knowledge base", func(t *testing.T) {
		for _, tr := range []*moltbot.Turn{
			turnOf("acme:1", nil, "退款多久到账？"),
			turnOf("acme:1", &moltbot.Bot{Name: "plain"}, "退款多久到账？"),
		} {
			if c, err := st.BeforeModel(ctx, tr, nil); c != nil || err != nil || tr.Notes != nil {
				t.Fatalf("a turn naming no knowledge base: %v %v %v", c, err, tr.Notes)
			}
		}
		tr := turnOf("acme:1", nil, "退款多久到账？")
		NewStage(s, StageConfig{Default: []string{"support"}}).BeforeModel(ctx, tr, nil)
		if tr.Notes[NoteHit] != "true" {
			t.Fatalf("the default knowledge base for a turn of no bot: %v", tr.Notes)
		}
	})
}

// The stage idles (the turn's floor path) with no document, and with
// documents but no turn that may search: no default, no bot naming one.
func TestStageIdle(t *testing.T) {
	s := openStore(t, newMemKV())
	st := NewStage(s, StageConfig{})
	if !st.Idle() {
		t.Fatal("not idle without a document")
	}
	s.Put("acme", "kb", []Doc{{Name: "a.md", Text: "a"}})
	if st.Idle() {
		t.Fatal("idle with documents, some bot maybe searching")
	}
	st.SetBotsSearch(false)
	if !st.Idle() {
		t.Fatal("not idle when no bot names a knowledge base and there is no default")
	}
	d := NewStage(s, StageConfig{Default: []string{"kb"}})
	d.SetBotsSearch(false)
	if d.Idle() {
		t.Fatal("idle with a default")
	}
}
