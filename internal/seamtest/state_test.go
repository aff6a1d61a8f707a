package seamtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// counter keeps a count with the conversation (Turn.SetState) and answers
// every turn with it; "fail" fails the turn after counting, "big" tries
// to keep more than a conversation may.
type counter struct{}

func (counter) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	n, _ := strconv.Atoi(string(t.StateOf("counter")))
	n++
	if err := t.SetState("counter", []byte(strconv.Itoa(n))); err != nil {
		return nil, err
	}
	last := t.Messages[len(t.Messages)-1].Content
	switch last {
	case "fail":
		return nil, moltbot.Errorf(moltbot.EUnavailable, "the stage failed after it counted")
	case "big":
		if err := t.SetState("other", make([]byte, moltbot.MaxStageState)); err != nil {
			return nil, err
		}
	case "forget":
		if err := t.SetState("counter", nil); err != nil {
			return nil, err
		}
	}
	return &moltbot.Completion{Content: fmt.Sprintf("turn %d", n), Served: moltbot.ModelRef{Provider: "skill", Model: "counter"}, FinishReason: "stop"}, nil
}

func stateRuntime(t *testing.T, store storage.Store) (*actors.Runtime, *chat.Service) {
	t.Helper()
	rt, err := actors.New(actors.Config{
		Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 3, Seed: 1}), MaxInFlight: 4, Timeout: 5 * time.Second}},
		Chain:     []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store:     store, Metrics: metrics.New("test"), HealthInterval: time.Hour,
		Before: []actors.BeforeModel{counter{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rt, chat.New(rt, nil, chat.Config{})
}

func say(ctx context.Context, s *chat.Service, conv, text string) (string, error) {
	st, err := s.Turn(ctx, moltbot.Anonymous(), chat.TurnRequest{Conversation: conv, Input: moltbot.TurnInput{Content: text}})
	if err != nil {
		return "", err
	}
	r, err := st.Wait()
	if err != nil {
		return "", err
	}
	return r.Message.Content, nil
}

// A stage's state lives with the conversation: stored with each turn's
// reply (not with a failed turn), read again after a restart of the node,
// bounded, and absent from a stateless completion.
func TestStageStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func() *storage.Pebble {
		p, err := storage.Open(dir, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	store := open()
	rt, s := stateRuntime(t, store)
	c, err := s.Create(ctx, moltbot.Anonymous(), moltbot.NewConversation{ID: "counted"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"turn 1", "turn 2"} {
		if got, err := say(ctx, s, c.ID, "hello"); err != nil || got != want {
			t.Fatalf("turn %d: %q %v", i+1, got, err)
		}
	}
	// A failed turn keeps nothing of what its stages set.
	if _, err := say(ctx, s, c.ID, "fail"); moltbot.ErrorCode(err) != moltbot.EUnavailable {
		t.Fatalf("a failing turn: %v", err)
	}
	// Beyond the bound: a clear error, and the state stays as it was.
	if _, err := say(ctx, s, c.ID, "big"); moltbot.ErrorCode(err) != moltbot.ETooLarge || !strings.Contains(err.Error(), "bounded by 65536 bytes") {
		t.Fatalf("too much state: %v", err)
	}
	// A stateless completion has no conversation to keep state with.
	st, err := s.Complete(ctx, moltbot.Anonymous(), chat.CompletionRequest{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}})
	if err == nil {
		_, err = st.Wait()
	}
	if moltbot.ErrorCode(err) != moltbot.EInvalid || !strings.Contains(err.Error(), "stateless completion") {
		t.Fatalf("a stateless completion: %v", err)
	}
	rt.Shutdown(context.Background())
	store.Close()

	store = open()
	defer store.Close()
	rt, s = stateRuntime(t, store)
	defer rt.Shutdown(context.Background())
	if got, err := say(ctx, s, c.ID, "hello again"); err != nil || got != "turn 3" {
		t.Fatalf("after the restart: %q %v", got, err)
	}
	stored, err := store.Get(moltbot.DefaultTenant, c.ID)
	if err != nil || string(stored.State["counter"]) != "3" {
		t.Fatalf("stored: %+v %v", stored, err)
	}
	// A stage that removes its state leaves none.
	if got, err := say(ctx, s, c.ID, "forget"); err != nil || got != "turn 4" {
		t.Fatalf("forget: %q %v", got, err)
	}
	if stored, err := store.Get(moltbot.DefaultTenant, c.ID); err != nil || stored.State != nil {
		t.Fatalf("after forget: %+v %v", stored.State, err)
	}
}
