package chat

import (
	"strconv"
	"testing"

	"github.com/moltbot/moltbot"
)

// TestStreamBurstOrderAndSpareQueue: a burst larger than the inline
// array moves to a spare queue and comes out in order; once the last event
// is taken the queue goes back to the pool with nothing left in it, and a
// later stream that takes it sees only its own events.
func TestStreamBurstOrderAndSpareQueue(t *testing.T) {
	for round := range 3 {
		st := newStream(256, nil)
		st.running.Done() // no turn runs
		for i := range 40 {
			if !st.push(moltbot.Event{Kind: moltbot.EventToken, Text: strconv.Itoa(round*100 + i)}) {
				t.Fatalf("round %d: push %d refused", round, i)
			}
			if i == 10 { // the reader takes two in the middle of the burst
				for j := range 2 {
					ev, ok := st.Next()
					if !ok || ev.Text != strconv.Itoa(round*100+j) {
						t.Fatalf("round %d: event %d = %q %v", round, j, ev.Text, ok)
					}
				}
			}
		}
		if st.spare == nil {
			t.Fatalf("round %d: 38 waiting events, still on the inline array", round)
		}
		st.end(moltbot.Event{Kind: moltbot.EventDone})
		for j := 2; j < 40; j++ {
			ev, ok := st.Next()
			if !ok || ev.Text != strconv.Itoa(round*100+j) {
				t.Fatalf("round %d: event %d = %q %v", round, j, ev.Text, ok)
			}
		}
		if ev, ok := st.Next(); !ok || ev.Kind != moltbot.EventDone {
			t.Fatalf("round %d: last event %+v %v", round, ev, ok)
		}
		if st.spare != nil || cap(st.q) != len(st.inline) || st.Pending() != 0 {
			t.Fatalf("round %d: the spare queue was not given back (spare %v, cap %d)", round, st.spare != nil, cap(st.q))
		}
		if _, ok := st.Next(); ok {
			t.Fatalf("round %d: an event after the last", round)
		}
	}
	q := spareQueues.Get().(*[]moltbot.Event)
	for i, ev := range (*q)[:cap(*q)] {
		if ev.Kind != 0 || ev.Text != "" || ev.Result != nil || ev.Err != nil || ev.Message != nil || ev.ToolCall != nil || ev.Citations != nil {
			t.Fatalf("a pooled queue holds an event in slot %d: %+v", i, ev)
		}
	}
}

// TestStreamFullBufferRefuses: the bound holds across the move to a
// spare queue.
func TestStreamFullBufferRefuses(t *testing.T) {
	st := newStream(6, nil)
	for i := range 6 {
		if !st.push(moltbot.Event{Kind: moltbot.EventToken, Text: "x"}) {
			t.Fatalf("push %d refused under the bound", i)
		}
	}
	if st.push(moltbot.Event{Kind: moltbot.EventToken}) {
		t.Fatal("a seventh waiting event was taken with EventBuffer 6")
	}
	if st.Pending() != 6 {
		t.Fatalf("Pending = %d, want 6", st.Pending())
	}
}
