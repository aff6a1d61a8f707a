package actors

import (
	"errors"
	"fmt"
	"testing"

	"github.com/moltbot/moltbot"
)

// The retention operations: a decision taken on one version applies only
// to that version; a trim keeps the newest messages and the system prompt
// and moves the version on; a delete is a client's delete.
func TestRetainTrimsAndDeletesByVersion(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	r := RetentionOf(e.rt)
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{System: "sys"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: fmt.Sprint("turn ", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Owns("default", c.ID) {
		t.Fatal("a node alone owns everything")
	}
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Messages) != 6 {
		t.Fatalf("%d messages", len(got.Messages))
	}
	// Another version: nothing happens.
	if err := r.Retain(ctx(t), "default", c.ID, got.Version-1, 2); !errors.Is(err, ErrChanged) {
		t.Fatalf("stale version: %v", err)
	}
	if err := r.Retain(ctx(t), "default", c.ID, got.Version, 4); err != nil {
		t.Fatal(err)
	}
	trimmed, _ := e.rt.Get(ctx(t), "default", c.ID)
	stored, _ := e.store.Get("default", c.ID)
	for _, cv := range []*moltbot.Conversation{trimmed, stored} {
		if len(cv.Messages) != 2 || cv.Messages[0].Content != "turn 2" || cv.System != "sys" || cv.Version != got.Version+1 || cv.Updated != got.Updated {
			t.Fatalf("after the trim: %+v", cv)
		}
	}
	// The conversation goes on after a trim.
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "again"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Retain(ctx(t), "default", c.ID, trimmed.Version, -1); !errors.Is(err, ErrChanged) {
		t.Fatalf("delete of a changed conversation: %v", err)
	}
	now, _ := e.rt.Get(ctx(t), "default", c.ID)
	if err := r.Retain(ctx(t), "default", c.ID, now.Version, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Get(ctx(t), "default", c.ID); code(err) != moltbot.ENotFound {
		t.Fatalf("after the delete: %v", err)
	}
	if _, err := e.store.Get("default", c.ID); err == nil {
		t.Fatal("the store still holds it")
	}
	if err := r.Retain(ctx(t), "default", c.ID, now.Version, -1); code(err) != moltbot.ENotFound {
		t.Fatalf("again: %v", err)
	}
}
