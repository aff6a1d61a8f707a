// Package seamtest proves the seam from the outside: a toy channel and a
// toy skill plug into the chat service and the turn pipeline without a
// line changed in any core package. A real channel (Slack, Telegram, a
// web widget) and a real skill take the same two doors.
package seamtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// echoSkill answers "/echo X" with "X" without a model (a before-model
// stage), and counts every answered turn (an after-model stage).
type echoSkill struct{ answered atomic.Int64 }

func (s *echoSkill) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	last := t.Messages[len(t.Messages)-1].Content
	text, ok := strings.CutPrefix(last, "/echo ")
	if !ok {
		return nil, nil
	}
	served := moltbot.ModelRef{Provider: "skill", Model: "echo"}
	if fn != nil {
		if err := fn(moltbot.Chunk{Content: text, Served: served}); err != nil {
			return nil, err
		}
	}
	return &moltbot.Completion{Content: text, Served: served, FinishReason: "stop"}, nil
}

func (s *echoSkill) AfterModel(ctx context.Context, t *moltbot.Turn, c *moltbot.Completion) error {
	s.answered.Add(1)
	return nil
}

// inbound is a toy platform's event: an id the platform may deliver again,
// who wrote, what.
type inbound struct{ eventID, user, text string }

// toyChannel is a thin adapter: an event becomes a turn of the user's
// conversation, the reply goes back to the platform (here, a slice).
type toyChannel struct {
	chat   *chat.Service
	tenant string
	mu     sync.Mutex
	sent   []string // what the platform showed, "user: text"
}

func (c *toyChannel) principal(user string) *moltbot.Principal {
	return &moltbot.Principal{Tenant: c.tenant, Space: c.tenant, Scope: moltbot.ScopeChat, Method: "channel",
		Channel: "toy", User: user, UserBound: true}
}

func (c *toyChannel) deliver(ctx context.Context, ev inbound) error {
	p := c.principal(ev.user)
	conv := "toy-" + ev.user
	if _, err := c.chat.Get(ctx, p, conv); moltbot.ErrorCode(err) == moltbot.ENotFound {
		if _, err := c.chat.Create(ctx, p, moltbot.NewConversation{ID: conv}); err != nil && moltbot.ErrorCode(err) != moltbot.EConflict {
			return err
		}
	}
	st, err := c.chat.Turn(ctx, p, chat.TurnRequest{Conversation: conv, Stream: true,
		Input: moltbot.TurnInput{Content: ev.text, ExternalID: ev.eventID}})
	if err != nil {
		return err
	}
	defer st.Close()
	var text strings.Builder
	for e := range st.Events() {
		switch e.Kind {
		case moltbot.EventToken:
			text.WriteString(e.Text)
		case moltbot.EventDone:
			if e.Result.Replayed {
				return nil // the platform already has this reply
			}
			c.mu.Lock()
			c.sent = append(c.sent, ev.user+": "+e.Result.Message.Content)
			c.mu.Unlock()
			return nil
		case moltbot.EventError:
			return e.Err
		}
	}
	return fmt.Errorf("stream ended without a result")
}

func TestToyChannelAndSkill(t *testing.T) {
	skill := &echoSkill{}
	met := metrics.New("test")
	rt, err := actors.New(actors.Config{
		Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 3, Seed: 1}), MaxInFlight: 4, Timeout: 5 * time.Second}},
		Chain:     []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store:     storage.NewMemory(), Metrics: met, HealthInterval: time.Hour,
		Before: []actors.BeforeModel{skill}, After: []actors.AfterModel{skill},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	ch := &toyChannel{chat: chat.New(rt, nil, chat.Config{Metrics: met}), tenant: "default"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, ev := range []inbound{
		{"e1", "ann", "/echo hello"},
		{"e2", "ann", "how are you?"},
		{"e1", "ann", "/echo hello"}, // the platform delivers e1 again
		{"e3", "bob", "/echo bob here"},
	} {
		if err := ch.deliver(ctx, ev); err != nil {
			t.Fatalf("%+v: %v", ev, err)
		}
	}
	if len(ch.sent) != 3 || ch.sent[0] != "ann: hello" || !strings.HasPrefix(ch.sent[1], "ann: ") || ch.sent[2] != "bob: bob here" {
		t.Fatalf("sent: %q", ch.sent)
	}
	// The skill answered two turns without a model; the model one.
	if n := met.Sum(metrics.InferenceRequests); n != 1 {
		t.Errorf("model calls: %d, want 1", n)
	}
	if skill.answered.Load() != 3 {
		t.Errorf("after-model stage saw %d turns, want 3", skill.answered.Load())
	}
	// Each user has one conversation; neither sees the other's.
	ann, err := ch.chat.Get(ctx, ch.principal("ann"), "toy-ann")
	if err != nil || len(ann.Messages) != 4 || ann.User != "ann" {
		t.Fatalf("ann's conversation: %+v %v", ann, err)
	}
	if _, err := ch.chat.Get(ctx, ch.principal("bob"), "toy-ann"); moltbot.ErrorCode(err) != moltbot.ENotFound {
		t.Errorf("bob reads ann's conversation: %v", err)
	}
	if ann.Messages[1].Model != "skill/echo" {
		t.Errorf("the skill's reply is recorded as %q", ann.Messages[1].Model)
	}
}

// A stage that panics fails its turn, not the conversation or the node.
func TestPanickingStage(t *testing.T) {
	rt, err := actors.New(actors.Config{
		Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 3, Seed: 1}), MaxInFlight: 4, Timeout: 5 * time.Second}},
		Chain:     []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store:     storage.NewMemory(), Metrics: metrics.New("test"), HealthInterval: time.Hour,
		Before: []actors.BeforeModel{panicky{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	s := chat.New(rt, nil, chat.Config{})
	p := moltbot.Anonymous()
	ctx := context.Background()
	c, err := s.Create(ctx, p, moltbot.NewConversation{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Turn(ctx, p, chat.TurnRequest{Conversation: c.ID, Input: moltbot.TurnInput{Content: "boom"}})
	if err == nil {
		_, err = st.Wait()
	}
	if moltbot.ErrorCode(err) != moltbot.EInternal {
		t.Fatalf("turn through a panicking stage: %v", err)
	}
	st, err = s.Turn(ctx, p, chat.TurnRequest{Conversation: c.ID, Input: moltbot.TurnInput{Content: "fine"}})
	if err == nil {
		_, err = st.Wait()
	}
	if err != nil {
		t.Fatalf("the next turn: %v", err)
	}
}

type panicky struct{}

func (panicky) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if t.Messages[len(t.Messages)-1].Content == "boom" {
		panic("a skill bug")
	}
	return nil, nil
}

// platform is the toy chat platform's send API, as a channel's outbox
// deliverer sees it.
type platform struct {
	mu   sync.Mutex
	sent map[string][]string // address -> texts
	ids  map[string]bool     // message ids shown: a repeat is not shown twice
}

func (p *platform) Deliver(ctx context.Context, space, conversation string, to moltbot.Destination, m moltbot.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids[m.ID] {
		return nil
	}
	p.ids[m.ID] = true
	p.sent[to.Address] = append(p.sent[to.Address], m.Content)
	return nil
}

func (p *platform) texts(addr string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sent[addr]...)
}

// A channel that answers later (a webhook acknowledged at once) hands the
// reply to the conversation's durable outbox; the platform gets it through
// the channel's deliverer, the skill's answer and the model's alike.
func TestToyChannelThroughTheOutbox(t *testing.T) {
	plat := &platform{sent: map[string][]string{}, ids: map[string]bool{}}
	skill := &echoSkill{}
	rt, err := actors.New(actors.Config{
		Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 3, Seed: 1}), MaxInFlight: 4, Timeout: 5 * time.Second}},
		Chain:     []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store:     storage.NewMemory(), Metrics: metrics.New("test"), HealthInterval: time.Hour,
		Before: []actors.BeforeModel{skill}, Deliver: plat, DeliverBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	s := chat.New(rt, nil, chat.Config{})
	p := &moltbot.Principal{Tenant: "default", Space: "default", Scope: moltbot.ScopeChat, Method: "channel", Channel: "toy", User: "ann", UserBound: true}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.Create(ctx, p, moltbot.NewConversation{ID: "toy-ann"}); err != nil {
		t.Fatal(err)
	}
	room := &moltbot.Destination{Channel: "toy", Address: "room-1"}
	for _, text := range []string{"/echo first", "second"} {
		st, err := s.Turn(ctx, p, chat.TurnRequest{Conversation: "toy-ann", Input: moltbot.TurnInput{Content: text, ReplyTo: room}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Wait(); err != nil { // the webhook's own answer; the reply goes by the outbox
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(plat.texts("room-1")) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := plat.texts("room-1")
	if len(got) != 2 || got[0] != "first" || got[1] == "" {
		t.Fatalf("the platform shows %q", got)
	}
}
