package conv

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// mailbox is a conversation actor's mailbox: protoactor's default mailbox
// (actor.UnboundedLockfree) in what it does, in less memory. That one is
// a struct of 96 bytes and two lock-free queues, each a header and a
// node kept as the queue's stub, and the last node a message came in
// stays too: about 190 bytes of every active conversation, which has
// nothing in its mailbox nearly all the time. This one is 96 bytes and
// holds nothing else while empty: two slices behind a mutex, which only
// the senders and the actor's own goroutine take, briefly.
//
// Its contract is the default mailbox's: system messages first, each
// before the next user message; SuspendMailbox holds user messages (a
// crashed actor waiting for its restart) until ResumeMailbox; the
// dispatcher's throughput, then a yield; a panic escalated to the
// invoker with the message that caused it. Message batches
// (actor.MessageBatch) are not unpacked: nothing sends one to a
// conversation.
type mailbox struct {
	mu         sync.Mutex
	status     atomic.Int32 // idle or scheduled
	suspended  atomic.Bool
	user, sys  []any // guarded by mu; nil when empty
	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
}

const (
	mailboxIdle int32 = iota
	mailboxScheduled
)

func newMailbox() actor.Mailbox { return &mailbox{} }

func (m *mailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	m.user = append(m.user, msg)
	m.mu.Unlock()
	m.schedule()
}

func (m *mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.sys = append(m.sys, msg)
	m.mu.Unlock()
	m.schedule()
}

func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

func (m *mailbox) Start() {}

func (m *mailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.user)
}

func (m *mailbox) schedule() {
	if m.status.CompareAndSwap(mailboxIdle, mailboxScheduled) {
		m.dispatcher.Schedule(m.process)
	}
}

// process runs messages until none is left (or only user messages, while
// suspended), then goes idle; one posted meanwhile schedules it again.
func (m *mailbox) process() {
	for {
		m.run()
		m.status.Store(mailboxIdle)
		m.mu.Lock()
		more := len(m.sys) > 0 || len(m.user) > 0 && !m.suspended.Load()
		m.mu.Unlock()
		if !more || !m.status.CompareAndSwap(mailboxIdle, mailboxScheduled) {
			return
		}
	}
}

// pop takes the next message: a system message if there is one, else a
// user message unless suspended. nil: nothing to run now.
func (m *mailbox) pop() (msg any, system bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sys) > 0 {
		msg, m.sys[0] = m.sys[0], nil
		if m.sys = m.sys[1:]; len(m.sys) == 0 {
			m.sys = nil
		}
		return msg, true
	}
	if len(m.user) == 0 || m.suspended.Load() {
		return nil, false
	}
	msg, m.user[0] = m.user[0], nil
	if m.user = m.user[1:]; len(m.user) == 0 {
		m.user = nil
	}
	return msg, false
}

func (m *mailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	i, t := 0, m.dispatcher.Throughput()
	for {
		if i > t {
			i = 0
			runtime.Gosched()
		}
		i++
		var system bool
		if msg, system = m.pop(); msg == nil {
			return
		}
		if !system {
			m.invoker.InvokeUserMessage(msg)
			continue
		}
		switch msg.(type) {
		case *actor.SuspendMailbox:
			m.suspended.Store(true)
		case *actor.ResumeMailbox:
			m.suspended.Store(false)
		default:
			m.invoker.InvokeSystemMessage(msg)
		}
	}
}
