package moltbot

import (
	"strings"
	"testing"
)

// SetState copies the conversation's map on its first write (the actor
// and copies of the conversation share it), removes a name set to nil,
// and refuses what would pass the bound or has no conversation.
func TestTurnSetState(t *testing.T) {
	shared := StageState{"a": []byte("1")}
	tr := &Turn{Conversation: "c", State: shared}
	if tr.StateChanged() || string(tr.StateOf("a")) != "1" {
		t.Fatal("before any write")
	}
	if err := tr.SetState("b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := tr.SetState("a", nil); err != nil {
		t.Fatal(err)
	}
	if len(shared) != 1 || string(shared["a"]) != "1" {
		t.Errorf("the shared map changed: %q", shared)
	}
	if !tr.StateChanged() || len(tr.State) != 1 || string(tr.State["b"]) != "2" {
		t.Errorf("%q", tr.State)
	}
	err := tr.SetState("big", make([]byte, MaxStageState))
	if ErrorCode(err) != ETooLarge || !strings.Contains(err.Error(), `stage "big"`) || tr.State["big"] != nil || len(tr.State) != 1 {
		t.Errorf("past the bound: %v %d", err, len(tr.State))
	}
	// Replacing a value within the bound after one past it still works.
	if err := tr.SetState("b", make([]byte, MaxStageState-1)); err != nil {
		t.Errorf("at the bound: %v", err)
	}
	if err := (&Turn{}).SetState("flow", []byte("x")); ErrorCode(err) != EInvalid || !strings.Contains(err.Error(), "stateless completion") {
		t.Errorf("stateless: %v", err)
	}
	if n := (StageState{"ab": []byte("cde")}).Size(); n != 5 {
		t.Errorf("size %d", n)
	}
}
