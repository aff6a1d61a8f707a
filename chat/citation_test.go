package chat

import (
	"context"
	"testing"

	"github.com/moltbot/moltbot"
)

// A streamed reply with sources sends them as one EventCitation right
// before EventDone; a reply without sends none.
func TestStreamCitations(t *testing.T) {
	for _, cites := range [][]moltbot.Citation{nil, {{N: 1, KB: "support", Document: "returns.md", Chunk: "returns.md#2", Score: 3}}} {
		rt, pol := newFake(), &fakePolicy{calls: -1}
		rt.citations = cites
		s := New(rt, pol, Config{})
		st, err := s.Complete(context.Background(), tenantA(), CompletionRequest{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}, Stream: true})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []moltbot.EventKind
		var got []moltbot.Citation
		for ev := range st.Events() {
			kinds = append(kinds, ev.Kind)
			if ev.Kind == moltbot.EventCitation {
				got = ev.Citations
			}
		}
		st.Close()
		n := len(kinds)
		if cites == nil {
			if got != nil || kinds[n-1] != moltbot.EventDone {
				t.Fatalf("no sources: events %v", kinds)
			}
			continue
		}
		if n < 2 || kinds[n-2] != moltbot.EventCitation || kinds[n-1] != moltbot.EventDone || len(got) != 1 || got[0].Document != "returns.md" {
			t.Fatalf("events %v, citations %+v", kinds, got)
		}
	}
}
