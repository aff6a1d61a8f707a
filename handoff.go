package moltbot

import "encoding/json"

// Hand-off to a human (issue 14): the words the conversation actor, the
// hand-off stage (skills/handoff), the management service and the edges
// share. The conversation's owner (bot, queue, agent) and its epoch are
// the hand-off stage's state (Turn.StateOf(HandoffStateName)); what comes
// from outside a user's turn (an agent claims, replies, releases; the
// queue's timeout expires) is a HandoffOp, run as a turn of its own.

// HandoffStateName is the stage-state name of the hand-off: the owner,
// epoch and counters (skills/handoff), and the mark a flow's handoff node
// leaves there (skills/flow HandoffState, the same name).
const HandoffStateName = "handoff"

// ReplyToStateName is the stage-state name under which the conversation
// actor keeps the last reply destination a turn gave (TurnInput.ReplyTo),
// so that a message the conversation makes on its own (an agent's reply,
// the notice of a queue's timeout) reaches the edge the user spoke through.
const ReplyToStateName = "reply_to"

// The operations of a hand-off that are not a user's message.
const (
	HandoffClaim   = "claim"   // an agent takes the queued conversation
	HandoffReply   = "reply"   // the owning agent says something to the user
	HandoffRelease = "release" // the agent (or the queue) gives it back to the bot
	HandoffExpire  = "expire"  // the queue's timeout: a ticket, and the bot resumes
)

// HandoffOp is an operation of a human agent (or of the queue's timer)
// on a conversation: TurnInput.Handoff. It runs as a turn on the
// conversation's owner (replicated, idempotent by ExternalID, seen by
// subscribers), adds no user message and calls no model: the hand-off
// stage checks Epoch against the conversation's in the same step
// (EConflict naming the current epoch when it is stale) and answers with
// Text (a reply), or with nothing.
type HandoffOp struct {
	Op    string `json:"op"`
	Epoch uint64 `json:"epoch"`
	// Agent names the human agent (its key's id or name): claim and reply.
	Agent string `json:"agent,omitempty"`
	// Text is the agent's reply (reply).
	Text string `json:"text,omitempty"`
}

// MaxHandoffText bounds an agent's reply.
const MaxHandoffText = 32 << 10

// FinishHandoff is the finish reason of a turn the hand-off answered: the
// conversation was handed to a person at this turn (the reply is the
// hand-off's notice) or is with one (the reply is empty: no model was
// asked; the person answers later). The chat service then puts an
// EventHandoff before EventDone.
const FinishHandoff = "handoff"

// NoteNoReply, set to "true" by a stage that answered, means the turn
// stores no assistant message: a user's message relayed to a person, an
// agent's claim. The conversation keeps the user's message (and the
// stages' state) and the turn's result carries an empty reply.
const NoteNoReply = "turn.no_reply"

// NoteTicket, set by the hand-off stage, is the id of the ticket a
// queue's timeout leaves: the conversation actor sends the turn's reply
// to the destination TicketChannel/<id> too, through its durable outbox,
// whose deliverer posts the signed ticket webhook.
const NoteTicket = "handoff.ticket"

// TicketChannel is the outbox channel of hand-off tickets.
const TicketChannel = "handoff.ticket"

// HandoffView is who has a conversation, as its API view shows it.
type HandoffView struct {
	Owner string `json:"owner"` // bot, queue, agent
	Epoch uint64 `json:"epoch"`
	Agent string `json:"agent,omitempty"`
}

// HandoffOf is the hand-off owner and epoch c keeps (skills/handoff's
// state, read for display only), nil when it was never handed off or the
// state does not read.
func HandoffOf(c *Conversation) *HandoffView {
	b := c.State[HandoffStateName]
	if len(b) == 0 || len(b) > 4<<10 {
		return nil
	}
	var v HandoffView
	if json.Unmarshal(b, &v) != nil || v.Owner != "bot" && v.Owner != "queue" && v.Owner != "agent" {
		return nil
	}
	return &v
}
