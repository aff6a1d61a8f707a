package actors

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// A message delivered again with the same external id (a channel's retry,
// a client's Idempotency-Key) runs no second turn: the stored reply is
// answered, marked Replayed, even after later turns; the same id with
// other content is a conflict.
func TestExternalIDIsIdempotent(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{User: "u1"})
	if err != nil || c.User != "u1" {
		t.Fatalf("create: %+v %v", c, err)
	}
	calls := func() uint64 { return e.met.Sum(metrics.InferenceRequests) }
	first, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hello", ExternalID: "evt-1"}, nil)
	if err != nil || first.Replayed {
		t.Fatalf("first delivery: %+v %v", first, err)
	}
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "next", ExternalID: "evt-2"}, nil); err != nil {
		t.Fatal(err)
	}
	before := calls()
	again, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hello", ExternalID: "evt-1"}, nil)
	if err != nil || !again.Replayed || again.Message.Content != first.Message.Content {
		t.Fatalf("redelivery: %+v %v", again, err)
	}
	if calls() != before {
		t.Errorf("a redelivered message asked a model: %d calls, %d before", calls(), before)
	}
	_, err = e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "something else", ExternalID: "evt-1"}, nil)
	if code(err) != moltbot.EConflict {
		t.Errorf("same id, other content: %v", err)
	}
	got, err := e.rt.Get(ctx(t), "default", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, m := range got.Messages {
		if m.Role == moltbot.RoleUser {
			users = append(users, m.Content)
		}
	}
	if strings.Join(users, ",") != "hello,next" || got.User != "u1" {
		t.Errorf("stored: users %v, owner %q", users, got.User)
	}
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "x", ExternalID: strings.Repeat("y", moltbot.MaxExternalIDLen+1)}, nil); code(err) != moltbot.EInvalid {
		t.Errorf("long external id: %v", err)
	}
}

// Concurrent deliveries of one message (a retry while the first is still
// running) make one turn.
func TestExternalIDConcurrentRetries(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	replies := make(chan string, 3)
	for i := 0; i < 3; i++ {
		go func() {
			res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "once", ExternalID: "evt-9"}, nil)
			if err == nil {
				replies <- res.Message.Content
			}
			errs <- err
		}()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	a, b, cc := <-replies, <-replies, <-replies
	if a != b || b != cc {
		t.Errorf("different replies: %q %q %q", a, b, cc)
	}
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Messages) != 2 {
		t.Errorf("%d messages, want one turn: %v", len(got.Messages), fmt.Sprint(got.Messages))
	}
}

// A turn for a user (AsUser) reaches only that user's conversation, checked
// by its owner in the same step: another user's is not found, even under a
// message id the owner already answered.
func TestTurnAsUser(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{User: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", ExternalID: "e1", AsUser: "ann"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, in := range []moltbot.TurnInput{{Content: "hi", AsUser: "bob"}, {Content: "hi", ExternalID: "e1", AsUser: "bob"}} {
		if _, err := e.rt.Turn(ctx(t), "default", c.ID, in, nil); code(err) != moltbot.ENotFound {
			t.Errorf("%+v: %v", in, err)
		}
	}
	// Deletes too: bob cannot delete ann's conversation; ann can.
	if err := e.rt.Delete(ctx(t), "default", c.ID, "bob"); code(err) != moltbot.ENotFound {
		t.Errorf("bob deletes ann's: %v", err)
	}
	if _, err := e.rt.Get(ctx(t), "default", c.ID); err != nil {
		t.Fatalf("gone after bob's delete: %v", err)
	}
	if err := e.rt.Delete(ctx(t), "default", c.ID, "ann"); err != nil {
		t.Errorf("ann deletes hers: %v", err)
	}
}
