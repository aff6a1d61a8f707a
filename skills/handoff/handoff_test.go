package handoff

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

// turnOf is a conversation's turn with state st and the user's text.
func turnOf(st moltbot.StageState, text string) *moltbot.Turn {
	return &moltbot.Turn{Space: "acme", Tenant: "acme", Conversation: "c1", User: "u1", State: st,
		Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: text}}}
}

func newTestStage(t *testing.T, c Config) (*Stage, *Index, *time.Time) {
	t.Helper()
	x := NewIndex()
	s, err := NewStage(c, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { return now }
	x.now = s.now
	return s, x, &now
}

// run plays one user turn: the stage before the model, the "model" (a
// reply with notes), the stage after; it returns the new state and
// whether the model was asked.
func run(t *testing.T, s *Stage, st moltbot.StageState, text string, notes map[string]string) (moltbot.StageState, *moltbot.Completion, bool) {
	t.Helper()
	tr := turnOf(st, text)
	c, err := s.BeforeModel(context.Background(), tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	asked := false
	if c == nil {
		asked = true
		for k, v := range notes {
			tr.Note(k, v)
		}
		c = &moltbot.Completion{Content: "model says", FinishReason: "stop"}
	}
	if err := s.AfterModel(context.Background(), tr, c); err != nil {
		t.Fatal(err)
	}
	return tr.State, c, asked
}

func stateOf(t *testing.T, st moltbot.StageState) State {
	t.Helper()
	s, mark, err := Decode(st[moltbot.HandoffStateName])
	if err != nil || mark {
		t.Fatalf("state %q: %v %v", st[moltbot.HandoffStateName], mark, err)
	}
	return s
}

// The triggers, as tables of turns: each row's notes are what the stages
// before the model noted; the hand-off comes at the row that reaches the
// count, not before.
func TestTriggers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		turns  []map[string]string
		reason string // "" : never handed off
		at     int    // the turn (index) that hands off
	}{
		{"kb misses, 2 in a row", Config{Enabled: true}, []map[string]string{{"kb.hit": "false"}, {"kb.hit": "false"}}, "kb_miss", 1},
		{"a hit resets the misses", Config{Enabled: true}, []map[string]string{{"kb.hit": "false"}, {"kb.hit": "true"}, {"kb.hit": "false"}}, "", 0},
		{"no note keeps the count", Config{Enabled: true}, []map[string]string{{"kb.hit": "false"}, {}, {"kb.hit": "false"}}, "kb_miss", 2},
		{"low confidence twice", Config{Enabled: true}, []map[string]string{{"intent.low": "true"}, {"intent.low": "true"}}, "low_confidence", 1},
		{"a confident intent between", Config{Enabled: true}, []map[string]string{{"intent": "refund", "intent.low": "true"}, {"intent": "refund"}, {"intent": "x", "intent.low": "true"}}, "", 0},
		{"negative, once when configured", Config{Enabled: true, Negative: 1}, []map[string]string{{"sentiment": "negative"}}, "negative", 0},
		{"negative twice by default", Config{Enabled: true}, []map[string]string{{"sentiment": "negative"}, {"sentiment": "neutral"}, {"sentiment": "negative"}, {"sentiment": "negative"}}, "negative", 3},
		{"a trigger off", Config{Enabled: true, FailedAnswers: -1}, []map[string]string{{"kb.hit": "false"}, {"kb.hit": "false"}, {"kb.hit": "false"}}, "", 0},
		{"disabled: no trigger", Config{}, []map[string]string{{"kb.hit": "false"}, {"kb.hit": "false"}}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, x, _ := newTestStage(t, tc.cfg)
			var st moltbot.StageState
			for i, notes := range tc.turns {
				var c *moltbot.Completion
				st, c, _ = run(t, s, st, "a question", notes)
				handed := c.FinishReason == moltbot.FinishHandoff
				if handed != (tc.reason != "" && i == tc.at) {
					t.Fatalf("turn %d: handed off %v (%+v)", i, handed, st)
				}
				if handed {
					got := stateOf(t, st)
					if got.Owner != OwnerQueue || got.Epoch != 1 || got.Reason != tc.reason || got.Misses+got.Lows+got.Negs != 0 {
						t.Fatalf("state %+v", got)
					}
					if !strings.HasSuffix(c.Content, DefaultNotice) || !strings.HasPrefix(c.Content, "model says") {
						t.Fatalf("reply %q", c.Content)
					}
					if l := x.List("acme"); len(l) != 1 || l[0].Reason != tc.reason {
						t.Fatalf("index %+v", l)
					}
					return
				}
			}
			if tc.reason != "" {
				t.Fatal("never handed off")
			}
		})
	}
}

// An explicit ask and a VIP hand off before the model; a queued
// conversation asks no model; the operations are fenced by the epoch.
func TestAskOperationsAndEpochs(t *testing.T) {
	s, x, now := newTestStage(t, Config{Enabled: true, VIPUsers: []string{"acme/vip"}, QueueTimeout: time.Minute})
	st, c, asked := run(t, s, nil, "你好，我要转人工", nil)
	if asked || c.Content != DefaultNotice || c.FinishReason != moltbot.FinishHandoff {
		t.Fatalf("ask: asked %v, %+v", asked, c)
	}
	got := stateOf(t, st)
	if got.Owner != OwnerQueue || got.Epoch != 1 || got.Deadline != now.Add(time.Minute).UnixMilli() {
		t.Fatalf("%+v", got)
	}
	// Queued: silent, the message relayed to the index.
	tr := turnOf(st, "hello?")
	c, err := s.BeforeModel(context.Background(), tr, nil)
	if err != nil || c == nil || c.Content != "" || tr.Notes[moltbot.NoteNoReply] != "true" || tr.StateChanged() {
		t.Fatalf("queued: %+v %v %v", c, err, tr.Notes)
	}
	if e, _ := x.Get("acme", "c1"); e.Last != "hello?" {
		t.Fatalf("index %+v", e)
	}
	op := func(st moltbot.StageState, o moltbot.HandoffOp) (*moltbot.Turn, *moltbot.Completion, error) {
		tr := turnOf(st, "")
		tr.Handoff = &o
		c, err := s.BeforeModel(context.Background(), tr, nil)
		return tr, c, err
	}
	conflict := func(err error, want string) {
		t.Helper()
		var e *moltbot.Error
		if !errors.As(err, &e) || e.Code != moltbot.EConflict || !strings.Contains(e.Message, want) {
			t.Fatalf("want a conflict naming %q, got %v", want, err)
		}
	}
	_, _, err = op(st, moltbot.HandoffOp{Op: moltbot.HandoffReply, Epoch: 1, Agent: "a", Text: "hi"})
	conflict(err, "not claimed")
	_, _, err = op(st, moltbot.HandoffOp{Op: moltbot.HandoffClaim, Epoch: 0, Agent: "a"})
	conflict(err, "epoch is 1")
	tr, c, err = op(st, moltbot.HandoffOp{Op: moltbot.HandoffClaim, Epoch: 1, Agent: "a"})
	if err != nil || tr.Notes[moltbot.NoteNoReply] != "true" {
		t.Fatalf("claim: %v %+v", err, c)
	}
	st = tr.State
	if got := stateOf(t, st); got.Owner != OwnerAgent || got.Epoch != 2 || got.Agent != "a" {
		t.Fatalf("claimed: %+v", got)
	}
	_, _, err = op(st, moltbot.HandoffOp{Op: moltbot.HandoffReply, Epoch: 2, Agent: "b", Text: "hi"})
	if moltbot.ErrorCode(err) != moltbot.EForbidden {
		t.Fatalf("another agent's reply: %v", err)
	}
	tr, c, err = op(st, moltbot.HandoffOp{Op: moltbot.HandoffReply, Epoch: 2, Agent: "a", Text: "hi there"})
	if err != nil || c.Content != "hi there" || c.Served.String() != "agent/a" || tr.StateChanged() {
		t.Fatalf("reply: %v %+v", err, c)
	}
	_, _, err = op(st, moltbot.HandoffOp{Op: moltbot.HandoffExpire, Epoch: 2})
	conflict(err, "not waiting in the queue")
	tr, _, err = op(st, moltbot.HandoffOp{Op: moltbot.HandoffRelease, Epoch: 2})
	if err != nil {
		t.Fatal(err)
	}
	st = tr.State
	if got := stateOf(t, st); got.Owner != OwnerBot || got.Epoch != 3 {
		t.Fatalf("released: %+v", got)
	}
	if l := x.List("acme"); len(l) != 0 {
		t.Fatalf("released, listed: %+v", l)
	}
	// The bot answers again.
	if _, _, asked := run(t, s, st, "and now?", nil); !asked {
		t.Fatal("the model was not asked after release")
	}
	_, _, err = op(st, moltbot.HandoffOp{Op: "dance", Epoch: 3})
	if moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Fatalf("unknown op: %v", err)
	}
	// A VIP goes to a person at once, the first time only.
	tr = &moltbot.Turn{Space: "acme", Tenant: "acme", Conversation: "c2", User: "vip", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}}
	if c, _ := s.BeforeModel(context.Background(), tr, nil); c == nil || stateOf(t, tr.State).Reason != "vip" {
		t.Fatalf("vip: %+v", c)
	}
	tr = &moltbot.Turn{Space: "acme", Tenant: "acme", Conversation: "c3", User: "vip", State: st, Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}}
	if c, _ := s.BeforeModel(context.Background(), tr, nil); c != nil {
		t.Fatalf("a released VIP conversation handed off again: %+v", c)
	}
}

// The queue's timeout leaves a ticket and gives the conversation back.
func TestExpire(t *testing.T) {
	s, x, now := newTestStage(t, Config{Enabled: true, QueueTimeout: time.Minute})
	st, _, _ := run(t, s, nil, "human please", nil)
	if l := x.Expired(*now); len(l) != 0 {
		t.Fatalf("expired at once: %+v", l)
	}
	*now = now.Add(time.Minute)
	l := x.Expired(*now)
	if len(l) != 1 || l[0].Epoch != 1 {
		t.Fatalf("expired: %+v", l)
	}
	tr := turnOf(st, "")
	tr.Handoff = &moltbot.HandoffOp{Op: moltbot.HandoffExpire, Epoch: 1}
	c, err := s.BeforeModel(context.Background(), tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := stateOf(t, tr.State)
	ticket := tr.Notes[moltbot.NoteTicket]
	if got.Owner != OwnerBot || got.Epoch != 2 || got.Ticket != ticket || !strings.HasPrefix(ticket, "tk_") || !strings.Contains(c.Content, ticket) {
		t.Fatalf("expired: %+v %q %+v", got, ticket, c)
	}
	if l := x.Expired(*now); len(l) != 0 {
		t.Fatalf("still expiring: %+v", l)
	}
}

// A flow's handoff mark, left during the turn, becomes a queued
// conversation in the same turn, keeping the epoch.
func TestFlowMark(t *testing.T) {
	s, _, _ := newTestStage(t, Config{}) // triggers off: the flow still hands off
	prev := State{Owner: OwnerBot, Epoch: 3}
	tr := turnOf(moltbot.StageState{moltbot.HandoffStateName: prev.Encode()}, "refund")
	if c, err := s.BeforeModel(context.Background(), tr, nil); c != nil || err != nil {
		t.Fatalf("%+v %v", c, err)
	}
	tr.SetState(moltbot.HandoffStateName, []byte(`{"flow":"refund","node":"human","at":1}`))
	c := &moltbot.Completion{Content: "I will get a person.", FinishReason: "stop"}
	if err := s.AfterModel(context.Background(), tr, c); err != nil {
		t.Fatal(err)
	}
	got := stateOf(t, tr.State)
	if got.Owner != OwnerQueue || got.Epoch != 4 || got.Reason != "flow" || got.Flow != "refund" || c.FinishReason != moltbot.FinishHandoff {
		t.Fatalf("%+v %+v", got, c)
	}
}

// The index: last writer wins by (epoch, time), tombstones hold back a
// late older record, a peer's garbage is skipped.
func TestIndexMerge(t *testing.T) {
	a, b := NewIndex(), NewIndex()
	t0 := time.Now().UnixMilli()
	var sent [][]byte
	a.Publish = func(p []byte) { sent = append(sent, p) }
	a.Put(Entry{Space: "s", Conversation: "c", Owner: OwnerQueue, Epoch: 1, Updated: t0 + 10})
	a.Put(Entry{Space: "s", Conversation: "c", Owner: OwnerAgent, Epoch: 2, Updated: t0 + 20})
	a.Put(Entry{Space: "s", Conversation: "c", Owner: OwnerQueue, Epoch: 1, Updated: t0 + 30}) // older epoch: lost
	if len(sent) != 2 {
		t.Fatalf("published %d", len(sent))
	}
	if n, err := b.Merge(sent[1]); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if n, _ := b.Merge(sent[0]); n != 0 {
		t.Fatal("an older record replaced a newer one")
	}
	if l := b.List("s"); len(l) != 1 || l[0].Owner != OwnerAgent {
		t.Fatalf("%+v", l)
	}
	a.Put(Entry{Space: "s", Conversation: "c", Owner: OwnerBot, Epoch: 3, Updated: t0 + 40})
	b.Merge(a.State())
	if l := b.List("s"); len(l) != 0 {
		t.Fatalf("released, still listed: %+v", l)
	}
	if n, _ := b.Merge(sent[1]); n != 0 {
		t.Fatal("a late record brought a released conversation back")
	}
	if n, err := b.Merge([]byte(`[{"space":"s","conversation":"d","owner":"boss","epoch":9},null,{"space":"","conversation":"x","owner":"queue"}]`)); n != 0 || err != nil {
		t.Fatal(n, err)
	}
	if _, err := b.Merge([]byte(`{`)); err == nil {
		t.Fatal("bad JSON merged")
	}
	if l := b.List("other"); len(l) != 0 {
		t.Fatal("another space's entries listed")
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"ticket":"tk_1"}`)
	now := time.Unix(1_700_000_000, 0)
	sig := Sign("k", now.Unix(), body)
	ts := "1700000000"
	if err := Verify("k", ts, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ secret, ts, sig, body string }{
		{"other", ts, sig, string(body)},
		{"k", ts, sig, string(body) + " "},
		{"k", "1700000001", sig, string(body)},
		{"k", ts, "sha256=00", string(body)},
		{"k", "x", sig, string(body)},
	} {
		if err := Verify(c.secret, c.ts, c.sig, []byte(c.body), now, time.Minute); err == nil {
			t.Errorf("verified %+v", c)
		}
	}
	if err := Verify("k", ts, sig, body, now.Add(time.Hour), time.Minute); err == nil {
		t.Error("an old timestamp verified")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Rules: []string{"(("}}, {Negative: -2}, {Resume: "%d"}, {VIPUsers: []string{""}}, {QueueTimeout: -1}} {
		if err := Validate(c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{``, `{"owner":"queue","epoch":1}`, `{"flow":"refund","node":"n","at":1}`, `{"owner":"x"}`, `{"owner":"agent","misses":-1}`, `[]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, mark, err := Decode(b)
		if err != nil {
			return
		}
		if st.Owner != OwnerBot && st.Owner != OwnerQueue && st.Owner != OwnerAgent {
			t.Fatalf("owner %q", st.Owner)
		}
		if mark {
			return
		}
		// What decodes encodes to what decodes the same.
		again, _, err := Decode(st.Encode())
		if err != nil || again != st {
			t.Fatalf("%+v -> %+v %v", st, again, err)
		}
	})
}

func FuzzIndexMerge(f *testing.F) {
	e, _ := json.Marshal([]Entry{{Space: "s", Conversation: "c", Owner: OwnerQueue, Epoch: 1, Updated: 1}})
	f.Add(e)
	f.Add([]byte(`[null]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x := NewIndex()
		x.Merge(b)
		for _, e := range x.List("s") {
			if !e.valid() {
				t.Fatalf("invalid entry kept: %+v", e)
			}
		}
		// Its state merges into another index as itself.
		y := NewIndex()
		y.Merge(x.State())
		if len(y.State()) != len(x.State()) {
			t.Fatal("state does not round-trip")
		}
	})
}

// BenchmarkBotTurn is the stage's cost on a turn the bot answers
// (triggers on, none fires): the explicit-ask rules over the message
// before the model, the notes counted after it.
func BenchmarkBotTurn(b *testing.B) {
	s, err := NewStage(Config{Enabled: true}, NewIndex(), nil)
	if err != nil {
		b.Fatal(err)
	}
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "What is the return policy for an order I placed last week? 我想退货。"}}
	b.ReportAllocs()
	for b.Loop() {
		t := &moltbot.Turn{Space: "acme", Tenant: "acme", Conversation: "c1", Messages: msgs}
		c, _ := s.BeforeModel(context.Background(), t, nil)
		if c != nil {
			b.Fatal("handed off")
		}
		t.Note("kb.hit", "true")
		if err := s.AfterModel(context.Background(), t, &moltbot.Completion{Content: "ok", FinishReason: "stop"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelay is a user's turn while a person has the conversation.
func BenchmarkRelay(b *testing.B) {
	s, err := NewStage(Config{Enabled: true}, NewIndex(), nil)
	if err != nil {
		b.Fatal(err)
	}
	st := moltbot.StageState{moltbot.HandoffStateName: State{Owner: OwnerAgent, Epoch: 2, Agent: "key:abc"}.Encode()}
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "thank you, and the invoice?"}}
	b.ReportAllocs()
	for b.Loop() {
		t := &moltbot.Turn{Space: "acme", Tenant: "acme", Conversation: "c1", Messages: msgs, State: st}
		if c, _ := s.BeforeModel(context.Background(), t, nil); c == nil {
			b.Fatal("not relayed")
		}
	}
}

func TestIndexIdle(t *testing.T) {
	x := NewIndex()
	now := time.UnixMilli(1_700_000_000_000)
	x.Put(Entry{Space: "s", Conversation: "a", Owner: OwnerAgent, Epoch: 2, Updated: now.Add(-2 * time.Minute).UnixMilli()})
	x.Put(Entry{Space: "s", Conversation: "b", Owner: OwnerAgent, Epoch: 2, Updated: now.Add(-30 * time.Second).UnixMilli()})
	x.Put(Entry{Space: "s", Conversation: "c", Owner: OwnerQueue, Epoch: 1, Updated: now.Add(-time.Hour).UnixMilli()})
	if l := x.Idle(now, time.Minute); len(l) != 1 || l[0].Conversation != "a" {
		t.Fatalf("%+v", l)
	}
	if l := x.Idle(now, 0); l != nil {
		t.Fatalf("off: %+v", l)
	}
}
