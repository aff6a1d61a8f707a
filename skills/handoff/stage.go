package handoff

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
)

// Stage is the hand-off in the turn pipeline. As a BeforeModel stage,
// first of all: while the queue or an agent owns the conversation it
// answers every user turn with nothing (the message is stored and
// relayed; no model, no other stage), it runs the agents' operations
// (moltbot.HandoffOp, fenced by the epoch) and it hands off on an
// explicit ask or a VIP's first message before any model is asked. As an
// AfterModel stage it reads what the stages before the model noted
// (kb.hit, intent.low, sentiment) and a flow's handoff mark, counts, and
// hands off when a count is reached.
type Stage struct {
	cfg   atomic.Pointer[compiled]
	index *Index
	log   *slog.Logger
	now   func() time.Time
}

// NewStage returns the stage; index receives every change of owner (nil:
// none kept).
func NewStage(c Config, index *Index, log *slog.Logger) (*Stage, error) {
	cc, err := compile(c)
	if err != nil {
		return nil, err
	}
	if index == nil {
		index = NewIndex()
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Stage{index: index, log: log, now: time.Now}
	s.cfg.Store(cc)
	return s, nil
}

// Reload replaces the config (a reload of moltbot.yaml).
func (s *Stage) Reload(c Config) error {
	cc, err := compile(c)
	if err != nil {
		return err
	}
	s.cfg.Store(cc)
	return nil
}

// Config is the config in force.
func (s *Stage) Config() Config { return s.cfg.Load().Config }

// StateName is the stage-state name it keeps (actors.Stateful): a
// conversation that holds it passes the stage even while it idles.
func (s *Stage) StateName() string { return moltbot.HandoffStateName }

// Idle reports whether the triggers are off (actors.Idler): the stage
// then runs only for a conversation with hand-off state (a flow's mark,
// a queued conversation) and for the agents' operations.
func (s *Stage) Idle() bool { return !s.cfg.Load().Enabled }

// noteEpoch keeps the epoch the turn began with, for AfterModel (a flow's
// mark replaces the state during the turn).
const noteEpoch = "handoff.epoch"

// BeforeModel implements actors.BeforeModel.
func (s *Stage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if t.Conversation == "" {
		return nil, nil
	}
	st := s.state(t)
	t.Note(noteEpoch, strconv.FormatUint(st.Epoch, 10))
	if t.Handoff != nil {
		return s.operate(t, st, t.Handoff, fn)
	}
	c := s.cfg.Load()
	if st.Held() {
		// Relayed: stored by the actor, seen by subscribers (the agent's
		// console) and in the queue's entry; the bot says nothing.
		if e, ok := s.index.Get(t.Space, t.Conversation); !ok || e.Epoch <= st.Epoch {
			s.put(t, st, moltbot.LastUserText(t.Messages))
		}
		t.Note(moltbot.NoteNoReply, "true")
		return &moltbot.Completion{FinishReason: moltbot.FinishHandoff, Served: moltbot.ModelRef{Provider: "handoff", Model: st.Owner}}, nil
	}
	if !c.Enabled {
		return nil, nil
	}
	reason := ""
	if c.asks(moltbot.LastUserText(t.Messages)) {
		reason = "ask"
	} else if st.Epoch == 0 && c.isVIP(moltbot.TenantOfSpace(t.Tenant), t.User) {
		reason = "vip"
	}
	if reason == "" {
		return nil, nil
	}
	if err := s.transfer(t, &st, reason); err != nil {
		return nil, err
	}
	served := moltbot.ModelRef{Provider: "handoff", Model: OwnerQueue}
	if t.Visible && fn != nil {
		if err := fn(moltbot.Chunk{Content: c.Notice, Served: served}); err != nil {
			return nil, err
		}
	}
	return &moltbot.Completion{Content: c.Notice, FinishReason: moltbot.FinishHandoff, Served: served}, nil
}

// AfterModel implements actors.AfterModel.
func (s *Stage) AfterModel(ctx context.Context, t *moltbot.Turn, comp *moltbot.Completion) error {
	if t.Conversation == "" || t.Handoff != nil || comp == nil || comp.FinishReason == moltbot.FinishHandoff {
		return nil
	}
	st, mark, err := Decode(t.StateOf(moltbot.HandoffStateName))
	if err != nil {
		st = State{Owner: OwnerBot}
	}
	if mark {
		// A flow's handoff node answered this turn: queue it, keeping the
		// epoch the turn began with.
		st.Epoch, _ = strconv.ParseUint(t.Notes[noteEpoch], 10, 64)
		if err := s.transfer(t, &st, "flow"); err != nil {
			return err
		}
		comp.FinishReason = moltbot.FinishHandoff
		return nil
	}
	c := s.cfg.Load()
	if !c.Enabled || st.Held() {
		return nil
	}
	before := st
	count := func(n *int, note, bad string, limit int) bool {
		if note == "intent.low" && limit > 0 {
			// The intent stage classifies when first asked
			// (moltbot.Turn.Later): the count needs it only when it can
			// hand off.
			t.Resolve(ctx, "intent")
		}
		v, ok := t.Notes[note]
		if note == "intent.low" && !ok {
			// The intent stage may note intent.low only when it fell back:
			// an intent found with confidence ends the run.
			_, ok = t.Notes["intent"]
		}
		if !ok {
			return false
		}
		if v != bad {
			*n = 0
			return false
		}
		*n++
		return limit > 0 && *n >= limit
	}
	reason := ""
	if count(&st.Misses, "kb.hit", "false", c.FailedAnswers) {
		reason = "kb_miss"
	}
	if count(&st.Lows, "intent.low", "true", c.LowConfidence) && reason == "" {
		reason = "low_confidence"
	}
	if count(&st.Negs, "sentiment", "negative", c.Negative) && reason == "" {
		reason = "negative"
	}
	if reason != "" {
		if err := s.transfer(t, &st, reason); err != nil {
			return err
		}
		comp.FinishReason = moltbot.FinishHandoff
		if !t.Visible {
			// Nobody saw the reply yet: the notice follows it.
			if comp.Content != "" {
				comp.Content += "\n\n"
			}
			comp.Content += c.Notice
		}
		return nil
	}
	if st != before {
		return t.SetState(moltbot.HandoffStateName, st.Encode())
	}
	return nil
}

// state is the conversation's hand-off state as the turn began (a state
// that does not decode is the bot's, logged: it cannot be trusted).
func (s *Stage) state(t *moltbot.Turn) State {
	st, mark, err := Decode(t.StateOf(moltbot.HandoffStateName))
	if err != nil {
		s.log.Warn("a conversation's hand-off state does not decode; the bot owns it", "conversation", t.Space+"/"+t.Conversation, "err", err)
		return State{Owner: OwnerBot}
	}
	if mark {
		// A mark left by a turn the stage did not see end (stored before
		// the stage was wired in): it is the bot's, queued now.
		st = State{Owner: OwnerBot, Flow: st.Flow, Node: st.Node}
	}
	return st
}

// transfer queues the conversation: a new epoch, a deadline, counters
// reset.
func (s *Stage) transfer(t *moltbot.Turn, st *State, reason string) error {
	now := s.now()
	*st = State{Owner: OwnerQueue, Epoch: st.Epoch + 1, Reason: reason, Since: now.UnixMilli(),
		Deadline: now.Add(s.cfg.Load().QueueTimeout).UnixMilli(), Ticket: st.Ticket, Flow: st.Flow, Node: st.Node}
	if err := t.SetState(moltbot.HandoffStateName, st.Encode()); err != nil {
		return err
	}
	s.put(t, *st, moltbot.LastUserText(t.Messages))
	return nil
}

// put records the conversation's new owner in the index.
func (s *Stage) put(t *moltbot.Turn, st State, last string) {
	s.index.Put(Entry{Space: t.Space, Conversation: t.Conversation, Owner: st.Owner, Epoch: st.Epoch, Agent: st.Agent,
		Reason: st.Reason, Since: st.Since, Deadline: st.Deadline, Last: last, Updated: s.now().UnixMilli()})
}

// operate runs an agent's (or the queue timer's) operation, fenced by
// the epoch.
func (s *Stage) operate(t *moltbot.Turn, st State, op *moltbot.HandoffOp, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if op.Epoch != st.Epoch {
		return nil, &moltbot.Error{Code: moltbot.EConflict, Param: "epoch", Message: fmt.Sprintf(
			"stale epoch %d: the conversation's hand-off epoch is %d (owner %s)", op.Epoch, st.Epoch, st.Owner)}
	}
	c := s.cfg.Load()
	now := s.now().UnixMilli()
	silent := func() (*moltbot.Completion, error) {
		t.Note(moltbot.NoteNoReply, "true")
		return &moltbot.Completion{FinishReason: moltbot.FinishHandoff, Served: moltbot.ModelRef{Provider: "handoff", Model: st.Owner}}, nil
	}
	say := func(text string, served moltbot.ModelRef) (*moltbot.Completion, error) {
		if text == "" {
			return silent()
		}
		if t.Visible && fn != nil {
			if err := fn(moltbot.Chunk{Content: text, Served: served}); err != nil {
				return nil, err
			}
		}
		return &moltbot.Completion{Content: text, FinishReason: "stop", Served: served}, nil
	}
	switch op.Op {
	case moltbot.HandoffClaim:
		if !st.Held() {
			return nil, notHeld(st)
		}
		if op.Agent == "" {
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "agent", Message: "a claim names its agent"}
		}
		st = State{Owner: OwnerAgent, Epoch: st.Epoch + 1, Agent: op.Agent, Reason: st.Reason, Since: now, Ticket: st.Ticket}
		if err := t.SetState(moltbot.HandoffStateName, st.Encode()); err != nil {
			return nil, err
		}
		s.put(t, st, lastOf(s.index, t))
		return silent()
	case moltbot.HandoffReply:
		if st.Owner != OwnerAgent {
			return nil, &moltbot.Error{Code: moltbot.EConflict, Param: "epoch", Message: fmt.Sprintf(
				"the conversation is not claimed (owner %s, epoch %d): claim it first", st.Owner, st.Epoch)}
		}
		if op.Agent != st.Agent {
			return nil, &moltbot.Error{Code: moltbot.EForbidden, Message: fmt.Sprintf("the conversation is claimed by agent %q, not %q", st.Agent, op.Agent)}
		}
		if strings.TrimSpace(op.Text) == "" {
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "text", Message: "an agent's reply has text"}
		}
		s.put(t, st, lastOf(s.index, t)) // the agent is there: its entry is fresh
		return say(op.Text, moltbot.ModelRef{Provider: "agent", Model: op.Agent})
	case moltbot.HandoffRelease:
		if !st.Held() {
			return nil, notHeld(st)
		}
		st = State{Owner: OwnerBot, Epoch: st.Epoch + 1, Since: now, Ticket: st.Ticket}
		if err := t.SetState(moltbot.HandoffStateName, st.Encode()); err != nil {
			return nil, err
		}
		s.put(t, st, "")
		return say(c.Release, moltbot.ModelRef{Provider: "handoff", Model: OwnerBot})
	case moltbot.HandoffExpire:
		if st.Owner != OwnerQueue {
			return nil, &moltbot.Error{Code: moltbot.EConflict, Param: "epoch", Message: fmt.Sprintf(
				"the conversation is not waiting in the queue (owner %s, epoch %d)", st.Owner, st.Epoch)}
		}
		ticket := newTicketID()
		st = State{Owner: OwnerBot, Epoch: st.Epoch + 1, Since: now, Ticket: ticket, Reason: st.Reason}
		if err := t.SetState(moltbot.HandoffStateName, st.Encode()); err != nil {
			return nil, err
		}
		s.put(t, st, "")
		t.Note(moltbot.NoteTicket, ticket)
		text := c.Resume
		if strings.Contains(text, "%s") {
			text = fmt.Sprintf(text, ticket)
		}
		return say(text, moltbot.ModelRef{Provider: "handoff", Model: OwnerBot})
	}
	return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "op", Message: fmt.Sprintf("hand-off operation %q is not claim, reply, release or expire", op.Op)}
}

func notHeld(st State) error {
	return &moltbot.Error{Code: moltbot.EConflict, Param: "epoch", Message: fmt.Sprintf(
		"the conversation is not handed off (owner %s, epoch %d)", st.Owner, st.Epoch)}
}

// lastOf is the last message the index holds for t's conversation.
func lastOf(x *Index, t *moltbot.Turn) string {
	e, _ := x.Get(t.Space, t.Conversation)
	return e.Last
}

func newTicketID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "tk_" + hex.EncodeToString(b[:])
}
