package conv

import (
	"reflect"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// invoker records what a mailbox runs; a user message "panic" panics.
type invoker struct {
	mu        sync.Mutex
	got       []any
	escalated []any
	done      chan struct{}
	want      int
}

func (v *invoker) record(m any) {
	v.mu.Lock()
	v.got = append(v.got, m)
	n := len(v.got)
	v.mu.Unlock()
	if n == v.want {
		close(v.done)
	}
}

func (v *invoker) InvokeSystemMessage(m any) { v.record(m) }
func (v *invoker) InvokeUserMessage(m any) {
	if m == "panic" {
		panic("boom")
	}
	v.record(m)
}
func (v *invoker) EscalateFailure(reason, m any) {
	v.mu.Lock()
	v.escalated = append(v.escalated, reason, m)
	v.mu.Unlock()
	v.record("escalated")
}

// held is a dispatcher that runs nothing until released, then runs what
// was scheduled on this goroutine.
type held struct{ fns []func() }

func (d *held) Schedule(fn func()) { d.fns = append(d.fns, fn) }
func (d *held) Throughput() int    { return 2 }
func (d *held) run() {
	for len(d.fns) > 0 {
		fn := d.fns[0]
		d.fns = d.fns[1:]
		fn()
	}
}

// The mailbox keeps the default mailbox's contract: system messages
// before user messages, SuspendMailbox holds user messages until
// ResumeMailbox, one schedule for many posts, a panic escalated with its
// message and the rest still run.
func TestMailbox(t *testing.T) {
	v := &invoker{done: make(chan struct{}), want: 7}
	d := &held{}
	m := newMailbox()
	m.RegisterHandlers(v, d)
	m.Start()
	m.PostUserMessage("u1")
	m.PostUserMessage("panic")
	m.PostUserMessage("u2")
	m.PostSystemMessage("s1")
	if len(d.fns) != 1 || m.UserMessageCount() != 3 {
		t.Fatalf("scheduled %d times, %d user messages", len(d.fns), m.UserMessageCount())
	}
	d.run()
	// s1 first; u1; the panic escalates and ends the run, which the
	// mailbox schedules again for u2.
	want := []any{"s1", "u1", "escalated", "u2"}
	if !reflect.DeepEqual(v.got, want) || !reflect.DeepEqual(v.escalated, []any{"boom", "panic"}) {
		t.Fatalf("ran %v, escalated %v; want %v", v.got, v.escalated, want)
	}

	m.PostSystemMessage(&actor.SuspendMailbox{})
	m.PostUserMessage("u3")
	d.run()
	if len(v.got) != 4 || m.UserMessageCount() != 1 {
		t.Fatalf("suspended: ran %v", v.got)
	}
	m.PostSystemMessage("s2")
	d.run()
	m.PostSystemMessage(&actor.ResumeMailbox{})
	m.PostUserMessage("u4")
	d.run()
	<-v.done
	if got := v.got; !reflect.DeepEqual(got[4:], []any{"s2", "u3", "u4"}) || m.UserMessageCount() != 0 {
		t.Fatalf("after resume: ran %v", got)
	}
	if len(d.fns) != 0 {
		t.Fatalf("%d runs left scheduled", len(d.fns))
	}
}
