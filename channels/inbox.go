package channels

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// The durable inbox. Accept writes the message to this node's inbox (a
// synced storage namespace) before it returns, so that an acknowledged
// event survives a kill -9; a worker then runs its turn through the chat
// service and deletes it once the turn is answered (or refused for good).
// Start replays what a crash left. Turns of one conversation run on one
// worker, in the order they were accepted.
//
// Deduplication has two levels: this node's inbox (and a memory of the
// last messages it finished) answers ErrDuplicate at once; across nodes,
// the turn's ExternalID (the channel's name and the message's id) makes
// the conversation's owner run it once, whichever node asks: the second
// asker gets the first turn's reply back (Replayed), counted as a
// duplicate, and the outbox sends the reply once.

// item is one message in the inbox.
type item struct {
	Channel  string  `json:"c"`
	Msg      Message `json:"m"`
	At       int64   `json:"t"`           // accepted, Unix ms
	Seq      int64   `json:"s"`           // the order of acceptance on this node (replayed in it)
	Attempts int     `json:"a,omitempty"` // turns tried that failed with a server error
	NextAt   int64   `json:"n,omitempty"` // the next try, Unix ms

	key, conv string
	size      int64 // of its record: what it holds of the pending bytes
}

// inboxKey is where m of channel name waits: the name, and a hash of the
// id (ids are the platform's; keys stay short and plain).
func inboxKey(name, id string) string {
	s := sha256.Sum256([]byte(id))
	return name + "/" + hex.EncodeToString(s[:16])
}

// ConversationID is the conversation a message of channel name goes to,
// keyed as keying says (PerUser: the chat and the author; PerChat: the
// chat; PerThread: the chat and the thread, or the message itself outside
// one): "ch:NAME:" and a hash, a valid conversation id.
func ConversationID(name, keying string, m Message) string {
	h := sha256.New()
	h.Write([]byte(m.Chat))
	h.Write([]byte{0})
	switch keying {
	case PerChat:
	case PerThread:
		t := m.Thread
		if t == "" {
			t = m.ID
		}
		h.Write([]byte(t))
	default:
		h.Write([]byte(m.User))
	}
	var sum [32]byte
	return "ch:" + name + ":" + hex.EncodeToString(h.Sum(sum[:0])[:12])
}

// ExternalID is the turn's external id for m of channel name: "NAME:" and
// the id, or a hash of it when it is long or not printable ASCII.
func ExternalID(name, id string) string {
	ok := len(name)+1+len(id) <= moltbot.MaxExternalIDLen
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] >= 0x21 && id[i] <= 0x7e
	}
	if ok {
		return name + ":" + id
	}
	s := sha256.Sum256([]byte(id))
	return name + ":#" + hex.EncodeToString(s[:20])
}

// MaxIDLen bounds Message.ID; MaxReplyLen Message.Reply.
const (
	MaxIDLen    = 512
	MaxReplyLen = 1024
	MaxUserLen  = 256
)

// Accept makes m a turn of its conversation (Host.Accept).
func (ch *channel) Accept(ctx context.Context, m Message) error {
	c, name := ch.core, ch.spec.Config.Name
	// A message out of bounds is refused for good (sent again, it would
	// be again).
	switch {
	case m.ID == "" || len(m.ID) > MaxIDLen:
		return fmt.Errorf("%w: a message id is 1 to %d bytes, got %d", ErrRefused, MaxIDLen, len(m.ID))
	case len(m.Reply) > MaxReplyLen:
		return fmt.Errorf("%w: a reply address is at most %d bytes, got %d", ErrRefused, MaxReplyLen, len(m.Reply))
	case len(m.User) > MaxUserLen || len(m.Chat) > MaxReplyLen || len(m.Thread) > MaxReplyLen:
		return fmt.Errorf("%w: a user id is at most %d bytes, a chat or thread %d", ErrRefused, MaxUserLen, MaxReplyLen)
	}
	for _, p := range m.Images {
		if p.Type != moltbot.PartImage || len(p.Data) > MaxImageBytes {
			return fmt.Errorf("%w: an image part of at most %d bytes, got a %q part of %d", ErrRefused, MaxImageBytes, p.Type, len(p.Data))
		}
	}
	if m.FromBot && !ch.spec.AllowBots {
		c.count(name, "dropped_bot")
		return fmt.Errorf("%w: the author is a bot (allow_bots is off)", ErrRefused)
	}
	if strings.TrimSpace(m.Text) == "" && len(m.Images) == 0 {
		c.count(name, "dropped_empty")
		return fmt.Errorf("%w: the message has neither text nor images", ErrRefused)
	}
	key := inboxKey(name, m.ID)
	if c.recent.has(key) {
		c.count(name, "duplicate")
		return duplicate{}
	}
	mu := c.stripe(key)
	mu.Lock()
	defer mu.Unlock()
	if _, found, err := c.cfg.Inbox.Get(key); err != nil {
		return fmt.Errorf("channels: reading the inbox: %w", err)
	} else if found {
		c.count(name, "duplicate")
		return duplicate{inFlight: true}
	}
	if c.q.total() >= c.cfg.MaxPending {
		return &moltbot.Error{Code: moltbot.EBusy, RetryAfter: 30 * time.Second,
			Message: fmt.Sprintf("channels: %d messages wait for their turn on this node; try again later", c.cfg.MaxPending)}
	}
	if n, bytes := c.q.totals(); n > 0 && bytes+messageSize(m) > c.cfg.MaxPendingBytes {
		return &moltbot.Error{Code: moltbot.EBusy, RetryAfter: 30 * time.Second,
			Message: fmt.Sprintf("channels: %d bytes of messages wait for their turn on this node (at most %d); try again later", bytes, c.cfg.MaxPendingBytes)}
	}
	// The budget after the checks that send the message again (a
	// duplicate, a full inbox): a platform's retries spend none.
	now := c.cfg.Now()
	if !c.pairs.allow(name+"\x00"+m.Chat+"\x00"+m.User, now) {
		c.count(name, "dropped_budget")
		return fmt.Errorf("%w: %d messages in %s from this author in this chat; refused for %s (a loop?)", ErrRefused,
			c.cfg.Budget, c.cfg.Window, c.cfg.Cooldown)
	}
	it := &item{Channel: name, Msg: m, At: now.UnixMilli(), Seq: c.nextSeq(), key: key, conv: ConversationID(name, ch.spec.Config.Conversations, m)}
	b, err := json.Marshal(it)
	if err != nil {
		return err
	}
	if err := c.cfg.Inbox.Put(key, b); err != nil {
		return fmt.Errorf("channels: writing the inbox: %w", err)
	}
	it.size = int64(len(b))
	c.count(name, "accepted")
	ch.mu.Lock()
	ch.status.LastEvent = now
	ch.mu.Unlock()
	c.q.add(it)
	c.startWork()
	return nil
}

// nextSeq is a number greater than every one this node gave before, across
// restarts (the clock's nanoseconds, or the last plus one).
func (c *Core) nextSeq() int64 {
	for {
		last := c.seq.Load()
		next := max(time.Now().UnixNano(), last+1)
		if c.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

func (c *Core) count(name, outcome string) { c.cfg.Metrics.Inc(metrics.ChannelEvents, name, outcome) }

// stripe is the lock of an inbox key: a check and a write of one id are
// one step, ids of others do not wait for each other's fsync.
func (c *Core) stripe(key string) *sync.Mutex {
	return &c.stripes[maphash.String(c.q.seed, key)%uint64(len(c.stripes))]
}

// replay queues what the inbox holds for the channels configured (others'
// messages stay until their channel comes back); only is one channel's
// name, "" for all.
func (c *Core) replay(only string) error {
	var items []*item
	var bad []string
	prefix := ""
	if only != "" {
		prefix = only + "/"
	}
	err := c.cfg.Inbox.ScanPrefix(prefix, func(k string, v []byte) bool {
		it := &item{}
		if json.Unmarshal(v, it) != nil || it.Channel == "" {
			bad = append(bad, k)
			return true
		}
		it.key, it.size = k, int64(len(v))
		items = append(items, it)
		return true
	})
	if err != nil {
		return fmt.Errorf("channels: reading the inbox: %w", err)
	}
	for _, k := range bad {
		c.log.Warn("channels: an unreadable inbox record was dropped", "key", k)
		_ = c.cfg.Inbox.Delete(k)
	}
	// In the order they were accepted (the keys are hashes): a
	// conversation's messages run in the order they came.
	slices.SortFunc(items, func(a, b *item) int { return cmp.Compare(a.Seq, b.Seq) })
	n := 0
	for _, it := range items {
		ch := c.channel(it.Channel)
		if ch == nil {
			continue
		}
		it.conv = ConversationID(it.Channel, ch.spec.Config.Conversations, it.Msg)
		c.q.add(it)
		n++
	}
	if n > 0 {
		c.log.Info("channels: messages accepted before a restart are run now", "messages", n)
	}
	return nil
}

// work runs the turns of worker i's shard until ctx ends.
func (c *Core) work(ctx context.Context, i int) {
	for {
		it := c.q.pop(ctx, i)
		if it == nil {
			return
		}
		c.process(ctx, it)
	}
}

// process runs it's turn and settles it: done, retried later, or given up.
func (c *Core) process(ctx context.Context, it *item) {
	ch := c.channel(it.Channel)
	if ch == nil {
		c.q.release(it)
		c.q.forget(it) // kept on disk until the channel comes back
		return
	}
	name := it.Channel
	p, err := ch.principal(it.Msg)
	var res *moltbot.TurnResult
	if err == nil {
		in := moltbot.TurnInput{Content: it.Msg.Text, ExternalID: ExternalID(name, it.Msg.ID),
			ReplyTo: &moltbot.Destination{Channel: name, Address: it.Msg.Reply}}
		if len(it.Msg.Images) > 0 {
			in.Parts = append(make([]moltbot.Part, 0, len(it.Msg.Images)+1), moltbot.Part{Type: moltbot.PartText, Text: it.Msg.Text})
			in.Parts = append(in.Parts, it.Msg.Images...)
		}
		tctx, cancel := context.WithTimeout(ctx, c.cfg.TurnTimeout)
		stop := ch.typing(tctx, it.Msg.Reply)
		res, err = ch.turn(tctx, p, it.conv, in)
		stop()
		cancel()
	}
	if ctx.Err() != nil {
		c.q.forget(it) // stopping: the message stays in the inbox for the next start
		return
	}
	switch {
	case err == nil:
		if res != nil && res.Replayed {
			c.count(name, "duplicate") // another node (or an earlier life) ran it
		}
		c.settle(it)
	case moltbot.ErrorCode(err) == moltbot.EConflict:
		// The external id was used for another message, or the message's
		// turn failed and later ones followed: never run again.
		c.cfg.Metrics.Inc(metrics.ChannelTurnsFailed, name)
		ch.log.Warn("channel message not run", "err", err)
		c.settle(it)
	case clientError(err):
		c.cfg.Metrics.Inc(metrics.ChannelTurnsFailed, name)
		ch.log.Info("channel message refused; the user is told", "code", moltbot.ErrorCode(err), "err", err)
		ch.notice(ctx, it.Msg.Reply, noticeFor(err))
		c.settle(it)
	default:
		it.Attempts++
		if it.Attempts >= c.cfg.Attempts {
			c.cfg.Metrics.Inc(metrics.ChannelTurnsFailed, name)
			ch.log.Error("channel message given up after its attempts", "attempts", it.Attempts, "err", err)
			ch.notice(ctx, it.Msg.Reply, "Sorry, I could not answer that message. Please try again later.")
			c.settle(it)
			return
		}
		wait := Backoff(it.Attempts-1, c.cfg.RetryBase, 5*time.Minute)
		it.NextAt = c.cfg.Now().Add(wait).UnixMilli()
		if b, merr := json.Marshal(it); merr == nil {
			_ = c.cfg.Inbox.Put(it.key, b)
		}
		ch.log.Warn("channel turn failed; tried again later", "attempt", it.Attempts, "in", wait.Round(time.Millisecond), "err", err)
		c.q.hold(it)
		c.q.later(it, wait)
	}
}

// settle takes it out of the inbox, remembering its key for a while.
func (c *Core) settle(it *item) {
	c.recent.add(it.key) // first: a retry between the two is a duplicate
	if err := c.cfg.Inbox.Delete(it.key); err != nil {
		c.log.Warn("channels: an answered message stays in the inbox", "err", err)
	}
	c.q.release(it)
	c.q.forget(it)
}

// clientError: the turn was refused for what the message or the tenant
// is (trying again does not help); the user is told.
func clientError(err error) bool {
	switch moltbot.ErrorCode(err) {
	case moltbot.EInvalid, moltbot.ETooLarge, moltbot.EQuota, moltbot.ERateLimited, moltbot.EForbidden, moltbot.ENotFound, moltbot.EUnauthorized:
		return true
	}
	return false
}

// noticeFor is the short answer a user gets for a refused message.
func noticeFor(err error) string {
	switch moltbot.ErrorCode(err) {
	case moltbot.EQuota:
		return "Sorry, this assistant has reached its storage quota and cannot answer now."
	case moltbot.ERateLimited:
		return "Too many messages right now: please wait a minute and try again."
	case moltbot.ETooLarge:
		return "Sorry, that message is too long for me."
	case moltbot.EInvalid:
		msg := moltbot.ErrorMessage(err)
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return "Sorry, I could not take that message: " + msg
	}
	return "Sorry, I cannot answer here right now."
}

// principal is who m's turn is for; the space is the tenant's now.
func (ch *channel) principal(m Message) (*moltbot.Principal, error) {
	cfg := &ch.spec.Config
	space := cfg.Tenant
	if f := ch.core.cfg.Space; f != nil {
		var err error
		if space, err = f(cfg.Tenant); err != nil {
			return nil, &moltbot.Error{Code: moltbot.EForbidden, Message: fmt.Sprintf("channel %q: tenant %q: %v", cfg.Name, cfg.Tenant, err)}
		}
	}
	return &moltbot.Principal{Tenant: cfg.Tenant, Space: space, Scope: moltbot.ScopeChat, Method: "channel", Channel: ch.label,
		Bot: cfg.Bot, User: m.User, UserBound: cfg.Conversations == PerUser || cfg.Conversations == ""}, nil
}

// turn runs the turn, creating the conversation on first use.
func (ch *channel) turn(ctx context.Context, p *moltbot.Principal, conv string, in moltbot.TurnInput) (*moltbot.TurnResult, error) {
	chat := ch.core.cfg.Chat
	res, err := chat.Turn(ctx, p, conv, in)
	if moltbot.ErrorCode(err) != moltbot.ENotFound {
		return res, err
	}
	if _, err := chat.Create(ctx, p, moltbot.NewConversation{ID: conv}); err != nil && moltbot.ErrorCode(err) != moltbot.EConflict {
		return nil, err
	}
	return chat.Turn(ctx, p, conv, in)
}

// typing calls Typing now and every TypingEvery until the returned stop.
func (ch *channel) typing(ctx context.Context, address string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ch.core.cfg.TypingEvery)
		defer t.Stop()
		for {
			if err := ch.ad.Typing(ctx, address); err != nil && ctx.Err() == nil {
				ch.log.Debug("typing indicator failed", "err", RedactError(err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// notice sends a short answer outside the conversation (not stored, not
// retried): why a message got no reply.
func (ch *channel) notice(ctx context.Context, address, text string) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ch.send(sctx, address, moltbot.Message{Role: moltbot.RoleAssistant, Content: text, Created: ch.core.cfg.Now().UnixMilli()})
}

// send is Adapter.Send, counted.
func (ch *channel) send(ctx context.Context, address string, m moltbot.Message) error {
	err := ch.ad.Send(ctx, address, m)
	outcome := "ok"
	if err != nil {
		outcome = "failed"
		msg := RedactError(err)
		ch.log.Warn("channel send failed", "err", msg)
		// The status shows it (a callback down, a token revoked): the
		// state stays the adapter's.
		ch.mu.Lock()
		ch.status.LastError, ch.status.ErrorAt = "send: "+msg, ch.core.cfg.Now()
		ch.mu.Unlock()
	}
	ch.core.cfg.Metrics.Inc(metrics.ChannelSends, ch.spec.Config.Name, outcome)
	return err
}

// queue holds the inbox's messages in memory, in shards (one a worker) by
// conversation, so a conversation's turns run in order on one worker.
type queue struct {
	mu      sync.Mutex
	shards  [][]*item
	wake    []chan struct{}
	pending map[string]int // in the inbox, by channel (waiting, running, retried later)
	n       int
	bytes   int64 // the sizes of the n
	running bool  // workers started (Core.mu)
	seed    maphash.Seed
	// retry is a conversation's message waiting to be tried again; held
	// its messages that came after, kept back until it settles (so a
	// retry does not let a later message of its conversation go first).
	retry map[string]*item
	held  map[string][]*item
}

func (q *queue) init(workers int) {
	q.shards = make([][]*item, workers)
	q.wake = make([]chan struct{}, workers)
	for i := range q.wake {
		q.wake[i] = make(chan struct{}, 1)
	}
	q.pending = map[string]int{}
	q.seed = maphash.MakeSeed()
	q.retry = map[string]*item{}
	q.held = map[string][]*item{}
}

func (q *queue) shardOf(conv string) int {
	return int(maphash.String(q.seed, conv) % uint64(len(q.shards)))
}

// hold keeps it's conversation's later messages back until release(it).
func (q *queue) hold(it *item) {
	q.mu.Lock()
	q.retry[it.conv] = it
	q.mu.Unlock()
}

// release lets the messages held behind it go first in their shard.
func (q *queue) release(it *item) {
	q.mu.Lock()
	if q.retry[it.conv] != it {
		q.mu.Unlock()
		return
	}
	delete(q.retry, it.conv)
	held := q.held[it.conv]
	delete(q.held, it.conv)
	i := q.shardOf(it.conv)
	if len(held) > 0 {
		q.shards[i] = append(held, q.shards[i]...)
	}
	q.mu.Unlock()
	if len(held) > 0 {
		select {
		case q.wake[i] <- struct{}{}:
		default:
		}
	}
}

// add counts a new inbox message and queues it (at its NextAt when later).
func (q *queue) add(it *item) {
	q.mu.Lock()
	q.pending[it.Channel]++
	q.n++
	q.bytes += it.size
	q.mu.Unlock()
	if d := time.Until(time.UnixMilli(it.NextAt)); it.NextAt > 0 && d > 0 {
		q.hold(it) // a retry replayed: its conversation waits for it
		q.later(it, d)
		return
	}
	q.push(it)
}

func (q *queue) push(it *item) {
	i := q.shardOf(it.conv)
	q.mu.Lock()
	q.shards[i] = append(q.shards[i], it)
	q.mu.Unlock()
	select {
	case q.wake[i] <- struct{}{}:
	default:
	}
}

// later queues it again after d.
func (q *queue) later(it *item, d time.Duration) { time.AfterFunc(d, func() { q.push(it) }) }

// pop takes shard i's next message, waiting for one; nil once ctx ends.
func (q *queue) pop(ctx context.Context, i int) *item {
	for {
		q.mu.Lock()
		for len(q.shards[i]) > 0 {
			it := q.shards[i][0]
			q.shards[i][0] = nil
			q.shards[i] = q.shards[i][1:]
			if r := q.retry[it.conv]; r != nil && r != it {
				q.held[it.conv] = append(q.held[it.conv], it) // behind its conversation's retry
				continue
			}
			q.mu.Unlock()
			return it
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-q.wake[i]:
		}
	}
}

// forget uncounts a message that left the inbox (or memory).
func (q *queue) forget(it *item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending[it.Channel]--; q.pending[it.Channel] <= 0 {
		delete(q.pending, it.Channel)
	}
	q.n--
	q.bytes -= it.size
}

func (q *queue) wakeAll() {
	for _, w := range q.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (q *queue) total() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// totals is how many messages wait and their bytes.
func (q *queue) totals() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.bytes
}

// messageSize is about what m's inbox record will weigh (its images as
// base64), before it is made.
func messageSize(m Message) int64 {
	n := int64(len(m.ID) + len(m.User) + len(m.UserName) + len(m.Chat) + len(m.Thread) + len(m.Text) + len(m.Reply) + 256)
	for _, p := range m.Images {
		n += int64(len(p.Data))*4/3 + int64(len(p.MIME)) + 64
	}
	return n
}

func (q *queue) len() int { return q.total() }

func (q *queue) pendingOf(name string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending[name]
}

// recent remembers the inbox keys of the last messages answered, so a
// late retry of one is a duplicate at once (the conversation's external
// id would answer it anyway, without a new turn).
type recent struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

const recentSize = 4096

func (r *recent) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[key]
	return ok
}

func (r *recent) add(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = make(map[string]struct{}, 64)
		r.ring = make([]string, recentSize)
	}
	if _, ok := r.set[key]; ok {
		return
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = key
	r.set[key] = struct{}{}
	r.next = (r.next + 1) % recentSize
}

// pairBudget is the per-(chat, author) budget against loops: Budget
// messages per Window, then Cooldown of refusals.
type pairBudget struct {
	mu               sync.Mutex
	budget           int
	window, cooldown time.Duration
	pairs            map[string]*pair
	swept            time.Time
}

// maxPairs bounds pairBudget's table: past it, swept at most once a
// second (not at each new pair: a scan of the whole table per message),
// and while it stays full a new pair goes uncounted (the budget is
// against loops; the inbox's bounds still hold a flood).
const maxPairs = 16384

type pair struct {
	start time.Time // of the window
	n     int
	until time.Time // refused until
}

func (b *pairBudget) init(budget int, window, cooldown time.Duration) {
	b.budget, b.window, b.cooldown = budget, window, cooldown
	b.pairs = map[string]*pair{}
}

func (b *pairBudget) allow(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pairs[key]
	if p == nil {
		if len(b.pairs) >= maxPairs {
			if now.Sub(b.swept) >= time.Second || now.Before(b.swept) {
				b.swept = now
				for k, q := range b.pairs {
					if now.Sub(q.start) > b.window && now.After(q.until) {
						delete(b.pairs, k)
					}
				}
			}
			if len(b.pairs) >= maxPairs {
				return true
			}
		}
		p = &pair{start: now}
		b.pairs[key] = p
	}
	if now.Before(p.until) {
		return false
	}
	if now.Sub(p.start) >= b.window {
		p.start, p.n = now, 0
	}
	p.n++
	if p.n > b.budget {
		p.until = now.Add(b.cooldown)
		p.start, p.n = p.until, 0
		return false
	}
	return true
}
