package conv

import (
	"context"
	"sync/atomic"

	"github.com/moltbot/moltbot"
)

// The messages of the conversation manager and its children.
//
// The request messages (create, get, delete, turn; relinquish) are
// answered exactly once, whatever happens: through answer, whose first
// call wins. Some are answered from a goroutine (after replication), and a
// crash of the actor answers what it held with an error (see crashed).

type convReply struct {
	conv *moltbot.Conversation
	err  error
}

type turnReply struct {
	res *TurnResult
	err error
}

type createMsg struct {
	tenant, id, system, model, user, bot string
	reply                                chan convReply // buffered (1)
	answered                             atomic.Bool
}

type getMsg struct {
	tenant, id string
	reply      chan convReply // buffered (1)
	answered   atomic.Bool
}

type deleteMsg struct {
	tenant, id string
	asUser     string     // the conversation must be this user's
	reply      chan error // buffered (1)
	answered   atomic.Bool
}

type turnMsg struct {
	tenant, id string
	// turnID identifies the turn across retries: the user message carries it,
	// so a retried turn never adds it twice and an answered one is replayed.
	turnID   string
	ctx      context.Context
	content  string
	parts    []moltbot.Part // the user message's parts (nil: text only)
	results  []moltbot.Part // tool results, stored before the user message
	opts     moltbot.ChatOptions
	fn       moltbot.StreamFunc
	visible  bool                 // the caller streams: it sees tokens as they come
	replyTo  *moltbot.Destination // the reply goes there too, through the outbox
	asUser   string               // the conversation must be this user's
	bot      *moltbot.Bot         // the conversation's bot (set by start), nil: none
	handoff  *moltbot.HandoffOp   // a hand-off operation, not a user's message (handoff.go)
	reply    chan turnReply       // buffered (1)
	answered atomic.Bool
}

type cancelMsg struct {
	tenant, id string
	turnID     string
}

// routed is a message the manager delivers to one conversation's actor.
type routed interface{ route() (tenant, id string) }

func (m *createMsg) route() (string, string) { return m.tenant, m.id }
func (m *getMsg) route() (string, string)    { return m.tenant, m.id }
func (m *deleteMsg) route() (string, string) { return m.tenant, m.id }
func (m *turnMsg) route() (string, string)   { return m.tenant, m.id }
func (m *cancelMsg) route() (string, string) { return m.tenant, m.id }

func (m *createMsg) answer(r convReply) {
	if !m.answered.Swap(true) {
		m.reply <- r
	}
}

func (m *getMsg) answer(r convReply) {
	if !m.answered.Swap(true) {
		m.reply <- r
	}
}

func (m *deleteMsg) answer(err error) {
	if !m.answered.Swap(true) {
		m.reply <- err
	}
}

func (m *turnMsg) answer(r turnReply) {
	if !m.answered.Swap(true) {
		m.reply <- r
	}
}

// request is a message whose sender waits for its answer.
type request interface{ fail(err error) }

func (m *createMsg) fail(err error) { m.answer(convReply{err: err}) }
func (m *getMsg) fail(err error)    { m.answer(convReply{err: err}) }
func (m *deleteMsg) fail(err error) { m.answer(err) }
func (m *turnMsg) fail(err error)   { m.answer(turnReply{err: err}) }
func (m *relinquishMsg) fail(error) { m.release() }

// turnDone comes from a turn's goroutine when the model call has ended.
type turnDone struct {
	turnID string
	comp   *moltbot.Completion
	err    error
	// summary, when set, was made for this turn's context: it is stored
	// with the reply (or alone, when the turn failed).
	summary *moltbot.Summary
	// state, when stateSet, is the conversation's stage state after the
	// turn (Turn.SetState was called): stored with the reply, dropped
	// with a failed turn.
	state    moltbot.StageState
	stateSet bool
	// noReply: a stage answered with no message to store (NoteNoReply);
	// ticket: the hand-off ticket the reply goes to as well (NoteTicket).
	noReply bool
	ticket  string
}

// handoffCheck asks a conversation whether it still belongs here.
type handoffCheck struct{}

// handedOff: the new owner has the conversation; stop.
type handedOff struct{}

// releaseMsg is a child asking to be stopped: it is idle (or holds no
// conversation) and has processed `processed` messages from the manager.
type releaseMsg struct {
	key       string
	pid       string
	processed uint64
}

// passivateMsg asks a child whether it is idle enough to stop.
type passivateMsg struct{}

type tickMsg struct{}

// ringMsg: membership changed; every child checks it still belongs here.
type ringMsg struct{}

// relinquishMsg: another node takes the conversation over. If it is active
// here, it stops serving (after its running turn); done closes then.
type relinquishMsg struct {
	tenant, id string
	done       chan struct{}
	closed     atomic.Bool
}

// release closes done, once.
func (m *relinquishMsg) release() {
	if !m.closed.Swap(true) {
		close(m.done)
	}
}
