package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
)

// The provider actors through the runtime: supervision after a panic,
// admission, the models a client may name, readiness.

func TestProviderPanicIsSupervised(t *testing.T) {
	var n atomic.Int64
	flaky := &fake{chat: func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		if n.Add(1) == 1 {
			panic("boom")
		}
		return echo(ctx, req, fn)
	}}
	e := start(t, []string{"flaky/m", "sim/sim"}, []ProviderSpec{spec("flaky", flaky), simSpec()}, nil)
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}
	comp, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Served.String() != "sim/sim" {
		t.Fatalf("the panicking call was not rerouted: %+v %v", comp, err)
	}
	testutil.Eventually(t, 5*time.Second, "restart counted", func() bool { return e.met.Get(metrics.ActorRestarts, "provider") == 1 })
	// The restarted provider serves again.
	testutil.Eventually(t, 5*time.Second, "restarted provider serving", func() bool {
		comp, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{}, nil)
		return err == nil && comp.Served.String() == "flaky/m"
	})
	testutil.Eventually(t, 5*time.Second, "in-flight back to 0", func() bool { return e.rt.Status().Providers[0].InFlight == 0 })
	if s := e.rt.Status(); s.Providers[0].Restarts != 1 {
		t.Errorf("status %+v", s.Providers[0])
	}
}

func TestProviderAdmission(t *testing.T) {
	release := make(chan struct{})
	slow := &fake{chat: blocking(release)}
	sp := spec("slow", slow)
	sp.MaxInFlight, sp.MaxQueue = 1, 1
	e := start(t, []string{"slow/m"}, []ProviderSpec{sp}, nil)
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{}, nil)
			errs <- err
		}()
	}
	testutil.Eventually(t, 5*time.Second, "one running, one queued", func() bool {
		s := e.rt.Status().Providers[0]
		return s.InFlight == 1 && s.Queued == 1
	})
	_, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{}, nil)
	if code(err) != moltbot.EBusy {
		t.Fatalf("third call: %v, want busy", err)
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Errorf("admitted call: %v", err)
		}
	}
	if e.met.Get(metrics.ProviderBusy, "slow") != 1 {
		t.Error("busy not counted")
	}
}

// Calls race for few slots, the fast path and the actor's queue together
// (with hedging every call runs on a goroutine of its own): every call is
// answered, none waits in the queue with a slot free, and the slots come
// back.
func TestProviderSlotsUnderContention(t *testing.T) {
	for _, hedge := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint("hedge ", hedge), func(t *testing.T) {
			sp := spec("p", &fake{chat: echo})
			sp.MaxInFlight, sp.MaxQueue = 2, 1000
			e := start(t, []string{"p/m", "p/m"}, []ProviderSpec{sp}, func(c *Config) { c.HedgeAfter = hedge })
			msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}
			const n = 200
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				go func() {
					_, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{}, nil)
					errs <- err
				}()
			}
			for i := 0; i < n; i++ {
				if err := <-errs; err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			testutil.Eventually(t, 5*time.Second, "slots free", func() bool {
				s := e.rt.Status().Providers[0]
				return s.InFlight == 0 && s.Queued == 0
			})
		})
	}
}

// series lists the names (with labels) of the moltbot_ metric series.
func series(e *env) []string {
	var b bytes.Buffer
	e.met.WritePrometheus(&b)
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "moltbot_") {
			out = append(out, l[:strings.LastIndexByte(l, ' ')])
		}
	}
	return out
}

// Client-chosen model names create no state: an unknown name is refused
// before a breaker or a metric series exists for it, a long one before it is
// looked up; the chain's, the configured and the listed models still work.
func TestUnknownModelsMakeNoState(t *testing.T) {
	sp := spec("sim", sim.NewProvider("sim", sim.Options{Tokens: 5, Seed: 1, Models: []string{"sim", "listed:latest"}}))
	sp.Models = []string{"configured"}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{sp}, nil)
	testutil.Eventually(t, 5*time.Second, "the provider's list", func() bool { return e.rt.ResolveModel("sim/listed") == nil })
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}
	for _, m := range []string{"sim/sim", "sim", "sim/configured", "configured", "sim/listed", "listed", "sim/listed:latest"} {
		if _, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{Model: m}, nil); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	bogus := func(i int) {
		for _, m := range []string{fmt.Sprintf("sim/made-up-%d", i), fmt.Sprintf("made-up-%d", i), fmt.Sprintf("nope/m-%d", i)} {
			if _, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{Model: m}, nil); code(err) != moltbot.ENotFound {
				t.Fatalf("%s: %v", m, err)
			}
			if i%100 == 0 {
				if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "x", Options: moltbot.ChatOptions{Model: m}}, nil); code(err) != moltbot.ENotFound {
					t.Fatalf("turn %s: %v", m, err)
				}
				if _, err := e.rt.Create(ctx(t), "default", CreateOptions{Model: m}); code(err) != moltbot.ENotFound {
					t.Fatalf("create %s: %v", m, err)
				}
			}
		}
	}
	bogus(0) // the series of refused turns exist from here on
	breakers, before := len(e.rt.Breakers()), series(e)
	for i := 1; i <= 1000; i++ {
		bogus(i)
	}
	if n := len(e.rt.Breakers()); n != breakers {
		t.Errorf("breakers %d -> %d", breakers, n)
	}
	if after := series(e); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("metric series grew from %d to %d", len(before), len(after))
	}
	long := "sim/" + strings.Repeat("m", MaxModelName)
	if err := e.rt.ResolveModel(long); code(err) != moltbot.EInvalid || !strings.Contains(err.Error(), "at most 256") {
		t.Fatalf("a long name: %v", err)
	}
	var me *moltbot.Error
	if err := e.rt.ResolveModel(strings.Repeat("m", 900<<10)); !errors.As(err, &me) || me.Param != "model" || len(err.Error()) > 200 {
		t.Fatalf("a 900 KB name is not refused by its length: %.200v", err)
	}
}

func TestReadyAndModels(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	testutil.Eventually(t, 5*time.Second, "ready", func() bool { return e.rt.Ready() == nil })
	var ids []string
	for _, m := range e.rt.Models() {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "moltbot,sim/sim" {
		t.Errorf("models %v", ids)
	}
}
