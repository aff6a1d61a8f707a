package skills

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/internal/metrics"
)

// hostileSkills are ten skills that each try to take the node down: four
// spin, three allocate without bound, three run a backtracking regexp
// that goja cannot interrupt.
func hostileSkills() map[string]string {
	files := map[string]string{}
	for i := range 4 {
		files[fmt.Sprintf("spin%d.js", i)] = fmt.Sprintf("module.exports = {name: 'spin%d', patterns: [/^evil spin%d$/], handler: async () => { for (;;) {} }};", i, i)
	}
	for i := range 3 {
		files[fmt.Sprintf("hog%d.js", i)] = fmt.Sprintf("module.exports = {name: 'hog%d', patterns: [/^evil hog%d$/], "+
			"handler: async () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)) }};", i, i)
		files[fmt.Sprintf("regexp%d.js", i)] = fmt.Sprintf("module.exports = {name: 'regexp%d', patterns: [/^evil regexp%d$/], "+
			"handler: async () => String(/^(a+)+\\1$/.test('a'.repeat(40) + 'b'))};", i, i)
	}
	return files
}

// BenchmarkHostileSkills measures another tenant's plain turns (no skill
// matches them: the router and the simulator) while ten hostile skills
// run at once in a loop (hostile), beside the same node with the same
// skills loaded but none running (baseline). The turns come one at a
// time, one every 5 ms (-benchtime 4000x: 20 s); each is timed, and
// p50 and p99 are reported (µs), and for hostile, the hostile runs by
// how they were stopped. A node's default of 2 workers; a deadline of 2s
// and a memory budget of 64 MiB so that each way of stopping a skill
// (interrupted, killed, out of memory) comes many times in the run.
// Method and numbers: BENCHMARKS.md.
func BenchmarkHostileSkills(b *testing.B) {
	const pace = 5 * time.Millisecond
	for _, hostile := range []bool{false, true} {
		name := "baseline"
		if hostile {
			name = "hostile"
		}
		b.Run(name, func(b *testing.B) {
			met := metrics.New("bench")
			e := startWith(b, hostileSkills(), Config{Deadline: 2 * time.Second, Memory: 64 << 20, Metrics: met})
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			if hostile {
				for f := range hostileSkills() {
					skill := f[:len(f)-len(".js")]
					wg.Go(func() {
						for i := 0; ctx.Err() == nil; i++ {
							conv := fmt.Sprintf("%s-%d", skill, i)
							if _, err := e.rt.Create(ctx, "evil", actorsCreate(conv)); err != nil {
								continue
							}
							e.rt.Turn(ctx, "evil", conv, moltbot.TurnInput{Content: "evil " + skill}, nil)
						}
					})
				}
				// Timing starts once both workers run a hostile skill.
				for len(e.sk.slots) > 0 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				// Paced: a turn every 5 ms (200 a second), as a client
				// that is not in a hurry, not one that takes every cycle.
				if d := time.Until(start.Add(time.Duration(i) * pace)); d > 0 {
					time.Sleep(d)
				}
				conv := fmt.Sprintf("q%d", i/20)
				if i%20 == 0 {
					b.StopTimer()
					if _, err := e.rt.Create(context.Background(), "quiet", actorsCreate(conv)); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				t0 := time.Now()
				res, err := e.rt.Turn(context.Background(), "quiet", conv, moltbot.TurnInput{Content: "hello, how are you"}, nil)
				lat = append(lat, time.Since(t0))
				if err != nil || res.Completion.Served.Provider != "m" {
					b.Fatalf("a plain turn: %v %+v", err, res)
				}
			}
			b.StopTimer()
			stop()
			wg.Wait()
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) }
			b.ReportMetric(q(0.50), "p50-µs")
			b.ReportMetric(q(0.99), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
			if hostile {
				for _, o := range []string{"deadline", "killed", "memory", "busy"} {
					var n uint64
					for f := range hostileSkills() {
						n += met.Get(metrics.SkillRuns, f[:len(f)-len(".js")], o)
					}
					b.ReportMetric(float64(n), o+"-runs")
				}
			}
		})
	}
}

func actorsCreate(id string) actors.CreateOptions { return actors.CreateOptions{ID: id} }
