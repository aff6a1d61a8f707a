package handoff

import (
	"context"
	"testing"

	"github.com/moltbot/moltbot"
)

// The intent stage classifies when first asked (moltbot.Turn.Later): the
// hand-off's low-confidence count asks, and hands off on the second low
// turn as it did when the notes were written before the model; with the
// count off (-1) nothing asks, and the classifier does not run.
func TestLowConfidenceAsksLater(t *testing.T) {
	for _, tc := range []struct {
		limit     int
		reason    string
		classify  int
		handedOff bool
	}{{0, "low_confidence", 2, true}, {-1, "", 0, false}} {
		s, _, _ := newTestStage(t, Config{Enabled: true, LowConfidence: tc.limit})
		var st moltbot.StageState
		classified := 0
		var comp *moltbot.Completion
		for range 2 {
			tr := turnOf(st, "hmm")
			if c, err := s.BeforeModel(context.Background(), tr, nil); c != nil || err != nil {
				t.Fatalf("before the model: %v %v", c, err)
			}
			tr.Later("intent", func(context.Context) {
				classified++
				tr.Note("intent", "fallback")
				tr.Note("intent.low", "true")
			})
			comp = &moltbot.Completion{Content: "model says", FinishReason: "stop"}
			if err := s.AfterModel(context.Background(), tr, comp); err != nil {
				t.Fatal(err)
			}
			st = tr.State
		}
		if classified != tc.classify || (comp.FinishReason == moltbot.FinishHandoff) != tc.handedOff {
			t.Fatalf("limit %d: classified %d times (want %d), finish %q", tc.limit, classified, tc.classify, comp.FinishReason)
		}
		if tc.handedOff && stateOf(t, st).Reason != tc.reason {
			t.Fatalf("limit %d: reason %q (want %q)", tc.limit, stateOf(t, st).Reason, tc.reason)
		}
	}
}
