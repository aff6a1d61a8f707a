// Package handoff hands a conversation to a person (issue 14): the
// owner/epoch state a conversation keeps under the stage-state name
// "handoff", the triggers that queue it, the turn-pipeline stage that
// relays while a person owns it and runs the agents' operations (claim,
// reply, release, the queue's timeout), the cluster-wide queue index and
// the signed ticket webhook.
//
// The truth is the conversation's own state, changed only by its owner
// actor in a turn (fenced by the epoch, stored with the turn, replicated):
// the index is a view of it for `handoff list`, last writer wins by
// (epoch, time).
package handoff

import (
	"encoding/json"
	"fmt"
)

// Owners of a conversation.
const (
	OwnerBot   = "bot"   // the bot answers (no state: the same)
	OwnerQueue = "queue" // waiting for a person; the bot is silent
	OwnerAgent = "agent" // a person answers; the bot is silent
)

// maxState bounds an encoded state (the decoder refuses more).
const maxState = 4 << 10

// State is what a conversation keeps under moltbot.HandoffStateName.
// Epoch counts the changes of owner: 0 for a conversation never handed
// off, 1 once queued, 2 once claimed, 3 once released, and so on. An
// operation names the epoch it saw and is refused on any other.
type State struct {
	Owner string `json:"owner"`
	Epoch uint64 `json:"epoch"`
	// Agent is the person who claimed it (OwnerAgent).
	Agent string `json:"agent,omitempty"`
	// Reason is why it was handed off: ask, kb_miss, low_confidence,
	// negative, vip, flow.
	Reason string `json:"reason,omitempty"`
	// Since is when the owner last changed; Deadline when the queue
	// times out (OwnerQueue); Unix milliseconds.
	Since    int64 `json:"since,omitempty"`
	Deadline int64 `json:"deadline,omitempty"`
	// The triggers' counters, in a row: answers without a knowledge-base
	// hit, low intent confidence, negative sentiment. Reset by a change of
	// owner.
	Misses int `json:"misses,omitempty"`
	Lows   int `json:"lows,omitempty"`
	Negs   int `json:"negs,omitempty"`
	// Ticket is the last ticket a queue's timeout left.
	Ticket string `json:"ticket,omitempty"`
	// Flow and Node name the flow's handoff node that asked (Reason flow).
	Flow string `json:"flow,omitempty"`
	Node string `json:"node,omitempty"`
}

// Decode reads a conversation's hand-off state. Empty is the bot's
// (epoch 0). mark reports the mark a flow's handoff node leaves
// (skills/flow: {"flow","node","at"}, no owner), which the stage turns
// into a queued conversation; its Flow and Node are set.
func Decode(b []byte) (st State, mark bool, err error) {
	if len(b) == 0 {
		return State{Owner: OwnerBot}, false, nil
	}
	if len(b) > maxState {
		return State{}, false, fmt.Errorf("handoff: state of %d bytes (at most %d)", len(b), maxState)
	}
	var raw struct {
		State
		At int64 `json:"at"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return State{}, false, fmt.Errorf("handoff: state: %w", err)
	}
	st = raw.State
	switch st.Owner {
	case "":
		if st.Flow == "" {
			return State{}, false, fmt.Errorf("handoff: state without an owner or a flow's mark")
		}
		// A flow's mark: what the conversation was before it stays (the
		// flow does not know the epoch; the stage keeps it by reading the
		// state before the turn: see Stage).
		return State{Owner: OwnerBot, Flow: st.Flow, Node: st.Node}, true, nil
	case OwnerBot, OwnerQueue, OwnerAgent:
	default:
		return State{}, false, fmt.Errorf("handoff: state: owner %q is not bot, queue or agent", st.Owner)
	}
	if st.Misses < 0 || st.Lows < 0 || st.Negs < 0 || len(st.Agent) > 256 || len(st.Ticket) > 64 || len(st.Reason) > 64 {
		return State{}, false, fmt.Errorf("handoff: state out of bounds")
	}
	return st, false, nil
}

// Encode writes st for Turn.SetState.
func (st State) Encode() []byte {
	b, _ := json.Marshal(st) // a struct of strings and numbers
	return b
}

// Held reports whether a person (or the queue) owns the conversation: the
// bot calls no model.
func (st State) Held() bool { return st.Owner == OwnerQueue || st.Owner == OwnerAgent }
