package moltbot

import (
	"context"
	"strings"
)

// NewConversation is what a new conversation starts with.
type NewConversation struct {
	ID     string // empty: a random id
	System string
	Model  string // empty: the configured chain
	// User is the end user the conversation belongs to (Principal.User);
	// a user-bound caller sees only its own.
	User string
	// Bot is the bot the conversation is of (Principal.Bot): its turns run
	// on the bot's chain and skills.
	Bot string
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
	// Handoff, when set, is not a user's message but an operation of a
	// human agent or of the hand-off queue (claim, reply, release,
	// expire): no user message is stored, no model is asked (handoff.go).
	Handoff *HandoffOp
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
	// Citations are the sources of the reply (EventCitation: one event,
	// right before EventDone, when the reply has any).
	Citations []Citation
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
	// State is the conversation's stage state as the turn began (nil for a
	// stateless completion and for a conversation without any): read it
	// with StateOf, change it with SetState, never in place.
	State StageState
	// stateOwned: State is this turn's copy; stateSet: SetState was called.
	stateOwned, stateSet bool
	// Bot is the bot the turn is of (the conversation's, or a stateless
	// caller's), nil for none: a stage runs only the bot's skills (nil:
	// every skill) and its knowledge bases and guards.
	Bot *Bot
	// Notes are what stages found out about the turn, for the stages after
	// them (and a hand-off) to read, keyed by what they say: the sentiment
	// preset writes "sentiment" (positive, neutral, negative) and
	// "sentiment.score" (-1 to 1). Stages run one after the other, so a
	// stage writes with Note and reads the map without a lock. nil until
	// the first note. Notes live for the turn only (State is what stays
	// with the conversation).
	Notes map[string]string
	// Citations are the sources a stage before the model put into the
	// context (the knowledge base's); the pipeline sets them on the turn's
	// completion when none is there (citation.go).
	Citations []Citation
	// Handoff is the operation of a hand-off turn (TurnInput.Handoff), nil
	// for a user's turn: the hand-off stage answers it.
	Handoff *HandoffOp
	// later are notes a stage put off until a stage reads them (Later).
	later []laterNotes
}

// laterNotes is a Later: fn writes the notes whose keys begin with prefix.
type laterNotes struct {
	prefix string
	fn     func(ctx context.Context)
}

// Note sets a note on the turn (Turn.Notes).
func (t *Turn) Note(key, value string) {
	if t.Notes == nil {
		t.Notes = map[string]string{}
	}
	t.Notes[key] = value
}

// Later puts off the notes whose keys begin with prefix until a stage
// reads one: fn, which writes them with Note, runs once, on the reader's
// context, when NoteOf or Resolve asks for such a key, or never. A stage
// whose notes cost much and that most turns never read uses it: the
// intent stage classifies a message only when a flow's trigger, a skill's
// intent: or the hand-off asks what the intent is. A stage that reads a
// put-off note reads it with NoteOf (or calls Resolve before reading
// Notes).
func (t *Turn) Later(prefix string, fn func(ctx context.Context)) {
	t.later = append(t.later, laterNotes{prefix: prefix, fn: fn})
}

// Resolve runs what Later put off for the key or prefix key ("": all of
// it), so that Notes holds those notes.
func (t *Turn) Resolve(ctx context.Context, key string) {
	for i := 0; i < len(t.later); i++ {
		l := t.later[i]
		if l.fn == nil || !strings.HasPrefix(key, l.prefix) && !strings.HasPrefix(l.prefix, key) {
			continue
		}
		t.later[i].fn = nil // once, even if fn reads its own notes
		l.fn(ctx)
	}
}

// NoteOf is the note key ("" when none), once what Later put off for it
// has run.
func (t *Turn) NoteOf(ctx context.Context, key string) string {
	if len(t.later) > 0 {
		t.Resolve(ctx, key)
	}
	return t.Notes[key]
}

// StageState is the state the turn pipeline's stages keep with a
// conversation (Conversation.State, Turn.State), by stage name: a flow's
// cursor and variables, later a hand-off's owner and epoch. Values are
// never changed in place: a stage that changes its state sets a new value
// (Turn.SetState), so the conversation and its copies share the old one.
type StageState map[string][]byte

// MaxStageState bounds a conversation's stage state, names and values
// together: a stage that would keep more fails its turn.
const MaxStageState = 64 << 10

// Size is the bytes s holds, names and values together.
func (s StageState) Size() int {
	n := 0
	for k, v := range s {
		n += len(k) + len(v)
	}
	return n
}

// StateOf is the state stage name keeps with the turn's conversation (nil:
// none). It must not be changed in place.
func (t *Turn) StateOf(name string) []byte { return t.State[name] }

// SetState sets what stage name keeps with the conversation (nil or empty:
// nothing, it is removed); it is stored with the turn's reply, in the same
// write, and only when the turn succeeds. b is kept as it is: the caller
// must not change it afterwards. A stateless completion has no state (an
// error EInvalid); neither has a conversation whose state would pass
// MaxStageState (ETooLarge). Not safe for concurrent use: stages run one
// after the other on the turn's goroutine.
func (t *Turn) SetState(name string, b []byte) error {
	if t.Conversation == "" {
		return Errorf(EInvalid, "stage %q keeps state with a conversation, and a stateless completion has none: use the conversations API", name)
	}
	if !t.stateOwned {
		// Copy on the first write: the conversation's map is shared.
		st := make(StageState, len(t.State)+1)
		for k, v := range t.State {
			st[k] = v
		}
		t.State, t.stateOwned = st, true
	}
	old, had := t.State[name]
	if len(b) == 0 {
		delete(t.State, name)
	} else {
		t.State[name] = b
	}
	if n := t.State.Size(); n > MaxStageState {
		if had {
			t.State[name] = old
		} else {
			delete(t.State, name)
		}
		return Errorf(ETooLarge, "stage %q would keep %d bytes with conversation %q; a conversation's stage state is bounded by %d bytes",
			name, len(name)+len(b), t.Conversation, MaxStageState)
	}
	t.stateSet = true
	return nil
}

// StateChanged reports whether a stage called SetState in this turn: the
// conversation then stores t.State (empty: none) with the reply.
func (t *Turn) StateChanged() bool { return t.stateSet }
