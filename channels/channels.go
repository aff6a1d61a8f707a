// Package channels carries conversations to and from chat platforms
// (Slack, Discord, Telegram, Feishu, signed webhooks, a web widget).
//
// An adapter is a thin translation of one platform's protocol: it reads
// the platform's events (an outbound connection it keeps, or inbound HTTP
// requests), turns each user message into a Message and hands it to its
// Host; the Host makes it a turn of one conversation of the channel's bot
// and the reply comes back, later and through the conversation's durable
// outbox, to the adapter's Send with the Message's Reply address. Nothing
// in an adapter knows actors, storage or the chat service: the Host is the
// whole world it sees (the core in this package implements it; a test uses
// channeltest.Host).
//
// The contract every adapter keeps (each point has a test against a fake
// of the platform): signatures and secrets checked over the raw bytes, in
// constant time, before anything is parsed; stale timestamps refused;
// bodies and frames size-capped; bot authors, our own messages and edits
// dropped (Message.FromBot for what the core should count and drop);
// replies split with Split to the platform's limit; outbound calls paced
// per destination with a Limiter, honouring Retry-After; reconnects with
// Backoff; credentials never in a log line (Redact).
package channels

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/moltbot/moltbot"
)

// How a channel keys its conversations (Config.Conversations).
const (
	PerUser   = "user"   // one conversation per platform user and chat
	PerChat   = "chat"   // one per chat (everyone in a group shares it)
	PerThread = "thread" // one per thread (a message outside any thread starts one)
)

// Config is one channel of the file's channels: list, as its adapter sees
// it.
type Config struct {
	// Name is unique among the channels: the outbox's Destination.Channel,
	// the path /channels/{Name}/ of its inbound requests, `moltbot
	// channels status NAME`.
	Name string
	// Type is the adapter: slack, discord, telegram, feishu, webhook, widget.
	Type string
	// Bot is the bot the channel speaks as (its persona, chain, skills);
	// Tenant is that bot's tenant (the default tenant without a bot).
	Bot, Tenant string
	// Conversations is PerUser, PerChat or PerThread.
	Conversations string
	// Options are the type's own keys (credentials with ${VAR} expanded:
	// token, app_token, signing_secret, public_key, mode, ...). A type
	// lists the keys it knows (Type.Options); any other is a config error.
	Options map[string]string
}

// Message is one user message an adapter read from its platform.
type Message struct {
	// ID is the platform's id of the event or message, unique within the
	// channel: a delivery seen twice (a retry, the same event reaching two
	// nodes, a mention that also arrives as a message) has the same ID and
	// makes one turn, cluster-wide.
	ID string
	// User is the author's platform id, UserName how the platform shows them.
	User, UserName string
	// Chat is the chat, channel or DM it was written in; Thread the thread
	// ("" outside one). With Conversations they choose the conversation.
	Chat, Thread string
	// Text is what they wrote (mentions of the bot removed); Images are
	// its attached images as moltbot image parts (fetched by the adapter,
	// each at most MaxImageBytes), nil without.
	Text   string
	Images []moltbot.Part
	// Reply is where the answer goes: an address only this adapter reads
	// (a chat id, "channel/thread_ts", a callback URL), at most 1024 bytes.
	Reply string
	// FromBot marks an author that is a bot: the Host drops it and counts
	// it (a loop between two bots), unless the channel allows bots; then a
	// budget per (chat, author) pair still cuts a loop.
	FromBot bool
	// At is when the platform says it was written (zero: unknown).
	At time.Time
}

// MaxImageBytes is the largest image an adapter hands in.
const MaxImageBytes = 5 << 20

// ErrDuplicate is what Accept returns for a message it already took (the
// adapter acknowledges it like any other).
var ErrDuplicate = errors.New("channels: duplicate delivery")

// ErrRefused wraps what Accept refuses for good (a bot author, a pair over
// its budget, an empty message): the adapter acknowledges it and the
// platform must not send it again.
var ErrRefused = errors.New("channels: refused")

// Retry reports whether an Accept error means "not taken, for now" (try
// again, or let the platform send it again: do not acknowledge), and how
// long to wait first (the error's RetryAfter, at least a second). nil,
// ErrDuplicate and ErrRefused are final: acknowledge them.
func Retry(err error) (wait time.Duration, again bool) {
	if err == nil || errors.Is(err, ErrDuplicate) || errors.Is(err, ErrRefused) {
		return 0, false
	}
	var e *moltbot.Error
	if errors.As(err, &e) && e.RetryAfter > time.Second {
		return e.RetryAfter, true
	}
	return time.Second, true
}

// Host is what the core gives an adapter.
type Host interface {
	// Accept makes m a turn of its conversation. It returns once m is
	// durably taken (on disk, to survive this node's death) and before the
	// model runs, so a webhook acknowledges its platform within its
	// deadline; the reply comes back through Adapter.Send. A duplicate
	// returns ErrDuplicate; a message the Host refuses for good (a loop, a
	// budget, an empty text) an error wrapping ErrRefused: the adapter
	// acknowledges both, the platform must not send them again. Any other
	// error (a full inbox, a disk that failed, a node stopping) means "not
	// taken, for now": the adapter must not acknowledge, so the platform
	// sends it again (or, for a connection the platform will not replay, it
	// tries again itself after Retry's wait). Retry tells them apart.
	Accept(ctx context.Context, m Message) error
	// Get and Put are the channel's small durable state, the same on every
	// node of a cluster (last writer wins): Telegram's update offset, a
	// Discord session to resume. Values are at most 4 KiB.
	Get(key string) ([]byte, bool)
	Put(key string, value []byte) error
	// Log is the channel's logger (its name and type already on it).
	Log() *slog.Logger
	// Report tells `moltbot channels status` how the channel is: State is
	// one of the State* constants; err the last error (nil clears it).
	Report(state string, err error)
}

// Channel states (Host.Report).
const (
	StateConnecting = "connecting"
	StateConnected  = "connected" // the outbound connection is up
	StateListening  = "listening" // inbound only: waiting for requests
	StateBackoff    = "backoff"   // waiting before the next attempt
	StateFatal      = "fatal"     // stopped: a bad token, a refused intent
	StateElsewhere  = "elsewhere" // another node of the cluster runs it
	StateStopped    = "stopped"
)

// Adapter is one configured channel of a type.
type Adapter interface {
	// Run keeps the channel's outbound connection (Socket Mode, the
	// Gateway, a long-polling loop, a token refresher) until ctx ends,
	// reconnecting itself with Backoff. The core runs it on exactly one
	// node of a cluster (the ring's owner of the channel's name) and
	// cancels it there when the ring moves it. An adapter with nothing to
	// keep returns nil at once. A Fatal error stops it until the config
	// changes.
	Run(ctx context.Context) error
	// ServeHTTP takes the platform's requests to /channels/{Name}/... (the
	// core strips that prefix and caps the body at MaxBody); an adapter
	// without inbound requests answers 404. Any node of a cluster serves
	// them.
	http.Handler
	// Send posts m (an assistant reply, a human agent's answer) to address
	// (a Message.Reply): split to the platform's limit, paced per
	// destination, 429s waited out. An error makes the outbox try again
	// later; the outbox sends one message at a time per address, in order.
	Send(ctx context.Context, address string, m moltbot.Message) error
	// Typing shows the user that a reply is being written, where the
	// platform can (a no-op elsewhere); the core calls it while a turn runs.
	Typing(ctx context.Context, address string) error
}

// TestChecker is an Adapter that limits where `moltbot channels test` (a
// tenant admin's call, POST /v1/admin/channels/{name}/test) may send: an
// address a caller names, not one a platform gave. The webhook adapter
// takes only its callback_url's origin: a test must not make the node POST
// to any URL its admin names (its loopback, a cloud's metadata address).
type TestChecker interface {
	CheckTestAddress(address string) error
}

// MaxBody caps an inbound request's body.
const MaxBody = 1 << 20

// Type is an adapter type, as cmd registers it.
type Type struct {
	Name string
	// Options are the Config.Options keys the type knows; Required those
	// it needs. Check, when set, checks their values (an error names the key).
	Options, Required []string
	Check             func(Config) error
	// New makes the adapter; it does no I/O (Run and ServeHTTP do).
	New func(Config, Host) (Adapter, error)
}

// Fatal wraps an error after which Run must not be tried again (a revoked
// token, a refused intent): the core reports StateFatal and stops.
func Fatal(err error) error { return &fatal{err} }

// IsFatal reports whether err came from Fatal.
func IsFatal(err error) bool {
	var f *fatal
	return errors.As(err, &f)
}

type fatal struct{ err error }

func (f *fatal) Error() string { return f.err.Error() }
func (f *fatal) Unwrap() error { return f.err }
