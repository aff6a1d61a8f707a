package intent

import (
	"context"
	"os"
	"testing"
)

// TestSweep prints macro-F1 over thresholds and margins for the default
// scoring (run with INTENT_SWEEP=1): how the shipped settings were chosen
// (Nearest and Centroid were swept the same way: docs/DESIGN.md).
func TestSweep(t *testing.T) {
	if os.Getenv("INTENT_SWEEP") == "" {
		t.Skip("INTENT_SWEEP=1 prints the sweep")
	}
	set, samples := loadEval(t)
	for _, mode := range []Mode{Mixed} {
		set.clf.Mode = mode
		for _, th := range []float64{0.08, 0.1, 0.12, 0.15, 0.2} {
			for _, mg := range []float64{0, 0.01, 0.02, 0.03, 0.05} {
				set.Settings.Threshold, set.Settings.Margin = th, mg
				r, _ := set.Evaluate(context.Background(), samples, Options{Stages: UseRules | UseNgram})
				t.Logf("%-8s th %.2f margin %.2f: acc %.3f macroF1 %.3f fallback %.3f false-accept %.3f", mode, th, mg, r.Accuracy, r.MacroF1, r.FallbackRate, r.FalseAccept)
			}
		}
	}
}
