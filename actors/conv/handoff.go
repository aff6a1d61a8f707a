package conv

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Hand-off turns (moltbot.HandoffOp): an agent's claim, reply or release,
// or the queue's timeout, run as turns of the conversation on its owner,
// so that they are fenced, stored, replicated and seen by subscribers as
// any turn is. They add no user message: the pipeline's hand-off stage
// checks the operation's epoch against the conversation's state in the
// same step and answers (an agent's reply: its text, by "agent/<name>";
// a claim: nothing, NoteNoReply).

// startHandoff runs hand-off operation m: a retry of one already answered
// (same external id) gets its stored reply; the reply goes to the
// conversation's last reply destination when m names none.
func startHandoff(a *conversation, c actor.Context, m *turnMsg, chain []moltbot.ModelRef) {
	if strings.HasPrefix(m.turnID, ExternalTurn) {
		id := m.turnID + ":a"
		for i := len(a.conv.Messages) - 1; i >= 0; i-- {
			if r := a.conv.Messages[i]; r.ID == id {
				comp := &moltbot.Completion{Content: r.Content, Served: refOf(r.Model), FinishReason: "stop"}
				m.answer(turnReply{res: &TurnResult{Message: r, Version: a.conv.Version, Replayed: true, Completion: comp}})
				return
			}
		}
	}
	if m.replyTo == nil {
		m.replyTo = replyToOf(a.conv.State)
	}
	a.run(c, m, chain)
}

// finishSilent ends a turn a stage answered with no message to store
// (moltbot.NoteNoReply): the stages' state is stored (synced, replicated)
// when it changed, and the caller gets an empty reply.
func finishSilent(a *conversation, m *turnMsg, d *turnDone) {
	now := time.Now().UnixMilli()
	res := &TurnResult{Message: moltbot.Message{ID: m.turnID + ":a", Role: moltbot.RoleAssistant, Created: now}, Completion: d.comp, Version: a.conv.Version}
	prev := a.conv.State
	if d.stateSet {
		a.conv.State = d.state
		if len(d.state) == 0 {
			a.conv.State = nil
		}
	}
	a.conv.State = rememberReplyTo(a.conv.State, m)
	if !d.stateSet && sameState(prev, a.conv.State) {
		a.d.met.Inc(metrics.ConversationTurns, "ok")
		m.answer(turnReply{res: res})
		return
	}
	a.conv.Version++
	a.conv.Updated = now
	if err := a.own.persist(a.conv); err != nil {
		a.conv.State = prev
		a.conv.Version--
		a.d.met.Inc(metrics.ConversationTurns, "error")
		m.answer(turnReply{err: err})
		return
	}
	a.d.met.Inc(metrics.ConversationTurns, "ok")
	res.Version = a.conv.Version
	a.own.replicated(a.conv, func(err error) {
		if errors.Is(err, ErrStale) {
			m.answer(turnReply{err: Moved()})
			return
		}
		m.answer(turnReply{res: res})
	})
}

// sameState reports whether a and b are the same map (a turn's state is
// never changed in place: a change is a new map).
func sameState(a, b moltbot.StageState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

// rememberReplyTo returns st with m's reply destination kept under
// moltbot.ReplyToStateName (a new map when it changes, st itself when
// not): a message the conversation makes later on its own (an agent's
// reply) goes where the user last spoke from.
func rememberReplyTo(st moltbot.StageState, m *turnMsg) moltbot.StageState {
	if m.replyTo == nil {
		return st
	}
	b, err := json.Marshal(m.replyTo)
	if err != nil || string(st[moltbot.ReplyToStateName]) == string(b) {
		return st
	}
	if st.Size()+len(moltbot.ReplyToStateName)+len(b) > moltbot.MaxStageState {
		return st
	}
	out := make(moltbot.StageState, len(st)+1)
	for k, v := range st {
		out[k] = v
	}
	out[moltbot.ReplyToStateName] = b
	return out
}

// replyToOf is the reply destination kept in st, or nil.
func replyToOf(st moltbot.StageState) *moltbot.Destination {
	b := st[moltbot.ReplyToStateName]
	if len(b) == 0 {
		return nil
	}
	var d moltbot.Destination
	if json.Unmarshal(b, &d) != nil || d.Channel == "" {
		return nil
	}
	return &d
}

// personTurn reports whether turn m asks no model whatever its context: a
// hand-off operation, or a user's turn while a person (or the queue)
// has the conversation. Such a turn makes no summary of what no longer
// fits the context (a summary is a model call).
func personTurn(a *conversation, m *turnMsg) bool {
	if m.handoff != nil {
		return true
	}
	v := moltbot.HandoffOf(a.conv)
	return v != nil && v.Owner != "bot"
}
