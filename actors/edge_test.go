//go:build edge

package actors

import (
	"context"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// The edge build has no cluster RPC: a runtime asked to serve it is
// refused, saying so; a runtime alone serves turns as in every build.
func TestEdgeRefusesClusterRPC(t *testing.T) {
	ref, _ := moltbot.ParseModelRef("sim/sim")
	rt, err := New(Config{Providers: []ProviderSpec{simSpec()}, Chain: []moltbot.ModelRef{ref}, Store: storage.NewMemory(),
		Metrics: metrics.New("test"), RemoteAddr: "127.0.0.1:0"})
	if err == nil {
		rt.Shutdown(context.Background())
		t.Fatal("the edge build started cluster RPC")
	}
	if !strings.Contains(err.Error(), "no cluster engine") {
		t.Errorf("error %q does not say this build has no cluster engine", err)
	}
}

func TestEdgeAloneServesTurns(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	if a := e.rt.Link().RemoteAddress(); a != "" {
		t.Errorf("remote address %q alone", a)
	}
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hello"}, func(moltbot.Chunk) error { return nil })
	if err != nil || res.Message.Content == "" {
		t.Fatalf("turn: %+v %v", res, err)
	}
}
