package chat

// Findings of the review of the seam, one test each.

import (
	"context"
	"fmt"
	"testing"

	"github.com/moltbot/moltbot"
)

// swapRuntime runs swap when a subscription starts, before the follower
// is in place: what another client does meanwhile.
type swapRuntime struct {
	*fakeRuntime
	swap func()
}

func (s *swapRuntime) Subscribe(ctx context.Context, space, id string, fn func(moltbot.Event)) error {
	if s.swap != nil {
		s.swap()
	}
	return s.fakeRuntime.Subscribe(ctx, space, id, fn)
}

// A user-bound follower is checked when it asks; if the conversation is
// deleted and another user makes one with the same id (ids may be chosen
// by the client) before the follower is in place, the follower must not
// end up following the other user's conversation.
func TestReviewSubscribeChecksTheUserOnceInPlace(t *testing.T) {
	f := newFake()
	rt := &swapRuntime{fakeRuntime: f}
	s := New(rt, nil, Config{})
	ctx := context.Background()
	alice := &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeChat, Method: "jwt", User: "alice", UserBound: true}
	if _, err := s.Create(ctx, alice, moltbot.NewConversation{ID: "support"}); err != nil {
		t.Fatal(err)
	}
	rt.swap = func() {
		f.mu.Lock()
		f.convs["a/support"] = &moltbot.Conversation{Tenant: "a", ID: "support", User: "bob"}
		f.mu.Unlock()
	}
	st, err := s.Subscribe(ctx, alice, "support")
	if err == nil {
		st.Close()
		t.Fatal("alice follows the conversation bob made under the id of hers she deleted")
	}
	if code(err) != moltbot.ENotFound {
		t.Fatalf("want not found, got %v", err)
	}
}

// A subscription holds goroutines and a hub entry (and, in a cluster, one
// of the 1024 leases the owner keeps for this node, shared by every
// tenant) for as long as the client keeps it; one tenant must not hold
// them without bound.
func TestReviewSubscriptionsBoundedPerTenant(t *testing.T) {
	f := newFake()
	s := New(f, nil, Config{})
	ctx := context.Background()
	a := tenantA()
	b := &moltbot.Principal{Tenant: "b", Space: "b", Scope: moltbot.ScopeChat, Method: "key", KeyID: "k2"}
	for _, p := range []*moltbot.Principal{a, b} {
		if _, err := s.Create(ctx, p, moltbot.NewConversation{ID: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	var held []*Stream
	defer func() {
		for _, st := range held {
			st.Close()
		}
	}()
	const tries = 2000
	var refused error
	for i := 0; i < tries && refused == nil; i++ {
		st, err := s.Subscribe(ctx, a, "c")
		if err != nil {
			refused = err
			break
		}
		held = append(held, st)
	}
	if refused == nil {
		t.Fatalf("one key holds %d subscriptions, and no bound in sight", len(held))
	}
	if code(refused) != moltbot.ERateLimited {
		t.Errorf("refused with %v", refused)
	}
	st, err := s.Subscribe(ctx, b, "c")
	if err != nil {
		t.Fatalf("another tenant cannot follow: %v", err)
	}
	st.Close()
	held[0].Close()
	held = held[1:]
	st, err = s.Subscribe(ctx, a, "c")
	if err != nil {
		t.Fatal(fmt.Errorf("a closed subscription did not free its place: %w", err))
	}
	held = append(held, st)
}
