package actors

import (
	"context"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cache"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// A user-bound caller (an end user's token: it sees only its own
// conversations) shares no output cache entry with another user of its
// tenant: a hit told bob that someone of his tenant had sent exactly
// what he guessed, and gave him the reply made for it (found by review).
// Service keys share the tenant's entries, as designed.
func TestReviewCacheIsPerEndUser(t *testing.T) {
	met := metrics.New("test")
	oc, err := cache.New(cache.Config{Type: cache.TypeMemory, Metrics: met})
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	rt, err := New(Config{Providers: []ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}), MaxInFlight: 8}},
		Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: storage.NewMemory(), Metrics: met, HealthInterval: time.Hour,
		Around: []AroundModel{cache.NewStage(oc)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	zero := 0.0
	ask := func(p *moltbot.Principal) string {
		t.Helper()
		cc := &moltbot.CacheControl{}
		ctx := moltbot.WithCacheControl(moltbot.WithPrincipal(context.Background(), p), cc)
		if _, err := rt.Complete(ctx, []moltbot.Message{{Role: moltbot.RoleUser, Content: "my diagnosis is X"}},
			moltbot.ChatOptions{Temperature: &zero}, nil); err != nil {
			t.Fatal(err)
		}
		return cc.Result()
	}
	user := func(u string) *moltbot.Principal {
		return &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeChat, Method: "jwt", User: u, UserBound: true}
	}
	service := &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeChat, Method: "key"}
	for i, tc := range []struct {
		p    *moltbot.Principal
		want string
	}{
		{user("alice"), moltbot.CacheMiss}, {user("alice"), moltbot.CacheHit}, {user("bob"), moltbot.CacheMiss},
		{service, moltbot.CacheMiss}, {service, moltbot.CacheHit},
	} {
		if got := ask(tc.p); got != tc.want {
			t.Errorf("%d (%s): %s, want %s", i, tc.p.User, got, tc.want)
		}
	}
}
