package moltbot

import "context"

// NewConversation is what a new conversation starts with.
type NewConversation struct {
	ID     string // empty: a random id
	System string
	Model  string // empty: the configured chain
	// User is the end user the conversation belongs to (Principal.User);
	// a user-bound caller sees only its own.
	User string
}

// TurnInput is one user message for a stored conversation, and the tool
// results that come before it.
type TurnInput struct {
	// Content is the user message's text: TextOf(Parts) when Parts is set.
	// It may be empty when ToolResults are given (a turn that only hands
	// the model its tools' results).
	Content string
	// Parts, when not nil, are the user message's parts: text and images.
	Parts []Part
	// ToolResults answer the tool calls of the conversation's last reply,
	// one PartToolResult each, all of them: they are stored as tool
	// messages before the user message (if any), in this order.
	ToolResults []Part
	// ExternalID is the id the message had where it came from (a channel's
	// event id, a client's Idempotency-Key): a turn whose ExternalID the
	// conversation already has is not run again; its stored reply is
	// answered instead. Empty: every call is a new turn.
	ExternalID string
	Options    ChatOptions
	// AsUser, when set, is the end user the conversation must belong to:
	// another user's conversation is "not found", checked by its owner in
	// the same step as the turn (a user-bound caller's turns).
	AsUser string
	// ReplyTo, when set, sends the reply there too, through the
	// conversation's durable outbox (a channel's chat that must get the
	// answer even if this node dies before it is sent).
	ReplyTo *Destination
}

// Destination is where a conversation's messages go outside the request
// that asked: a channel adapter and its own address there.
type Destination struct {
	Channel string `json:"channel"` // the adapter's name
	Address string `json:"address"` // a chat id, "channel/thread", a callback URL
}

// Delivery is a message waiting in a conversation's outbox. Delivery is at
// least once: a receiver that must not show a message twice keys it by
// Message (the message's id).
type Delivery struct {
	Message  string      `json:"message"` // the message's id
	To       Destination `json:"to"`
	Attempts int         `json:"attempts"`
	// NextAt is when the next attempt is due (Unix milliseconds).
	NextAt    int64  `json:"next_at,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Failed marks a delivery given up (attempts spent, or refused for
	// good): it stays in the outbox, to be seen, and is not tried again.
	Failed bool `json:"failed,omitempty"`
}

// MaxExternalIDLen bounds TurnInput.ExternalID.
const MaxExternalIDLen = 128

// TurnResult is a finished turn: the stored reply and how it was made.
type TurnResult struct {
	Message    Message
	Completion *Completion
	// Version is the conversation's version after the reply was stored.
	Version uint64
	// Replayed is set when the turn was a retry of one already answered
	// (same ExternalID): nothing new was asked of a model or charged.
	Replayed bool
}

// ModelInfo is a model a client may ask for.
type ModelInfo struct {
	ID       string // "moltbot" (the chain), or provider/model
	Provider string
	// Caps are what the model can do, as far as the node knows (the
	// chain's: what its models can do together).
	Caps Capabilities
}

// ChainModel is the model name that means "the configured chain".
const ChainModel = "moltbot"

// EventKind says what an Event carries.
type EventKind uint8

// The events of a turn's stream, in the order they can come: tokens (and,
// as later features bring them, tool calls, citations, a hand-off), then
// exactly one Done or Error, last.
const (
	EventToken EventKind = iota + 1
	EventToolCall
	EventCitation
	EventHandoff
	EventDone
	EventError
	// EventMessage is a message stored in a conversation (a user's, a
	// model's reply, later a human agent's): what a subscriber follows.
	EventMessage
	// EventSubscribed: a follower is in place; events from here on reach
	// it. It comes first, and again after the conversation moved to
	// another node (events during the move may have been missed: read the
	// conversation again).
	EventSubscribed
)

// Event is one thing a turn produced, as an edge sees it.
type Event struct {
	Kind EventKind
	// Text is a token's text.
	Text string
	// ToolCall is a piece of a tool call (EventToolCall).
	ToolCall *ToolCallDelta
	// Served and Failovers say which model produces the tokens (EventToken).
	Served    ModelRef
	Failovers int
	// Result is the finished turn (EventDone): for a stateless completion,
	// Result.Completion only.
	Result *TurnResult
	// Err is why the turn failed (EventError); its code is a domain code.
	Err error
	// Message is the stored message (EventMessage).
	Message *Message
}

// ModelFunc asks the model chain (through the failover router) for a
// reply: opts.Model picks the model as a request's model does ("" for the
// chain); fn, when not nil, gets the tokens.
type ModelFunc func(ctx context.Context, msgs []Message, opts ChatOptions, fn StreamFunc) (*Completion, error)

// Turn is one model turn as the stages of the turn pipeline see it: before
// the model (guards, skills that answer, a cache lookup), the model, after
// it (a cache store, post-processing, accounting).
type Turn struct {
	// Space and Conversation name the conversation; both are empty for a
	// stateless completion.
	Space, Conversation string
	// Tenant is the space of the tenant the turn is for (Principal.Space:
	// the tenant id, with its incarnation for a tenant made through the
	// API), for a conversation's turn and a stateless completion (whose
	// caller says it with WithPrincipal) alike. Empty when the caller did
	// not say: a stage that keeps data by tenant (the output cache) then
	// keeps none.
	Tenant string
	// User is the conversation's end user (Conversation.User); for a
	// stateless completion, the caller's user when it is user-bound
	// (Principal.UserBound). The output cache keys by it.
	User string
	// Messages are what the model gets: the context, system prompt first,
	// the new user message last.
	Messages []Message
	Options  ChatOptions
	// Chain is the models the router will try, in order.
	Chain []ModelRef
	// Visible is set when the caller streams: tokens reach a user as they
	// come, and a stage after the model must not change the text.
	Visible bool
	// Model calls the chain through the router, for a stage that needs a
	// model of its own (a classifier, a skill's callModel).
	Model ModelFunc
	// Embed embeds texts through the embedding chain; nil when the node
	// has none (models.embeddings unset).
	Embed EmbedFunc
}
