package channels

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

// fakeChat is the chat service as the core sees it: conversations that
// must be created, external ids answered once (a second asker gets the
// first reply back, Replayed), and a hook to fail or hold turns.
type fakeChat struct {
	mu       sync.Mutex
	convs    map[string]string // id -> user it was created for
	external map[string]bool   // conversation/external id -> answered
	turns    []fakeTurn
	creates  int
	// fail, when set, answers a turn before it is recorded (nil: run it).
	fail func(ctx context.Context, n int) error
	ran  chan fakeTurn // each turn run (buffered)
}

type fakeTurn struct {
	P    moltbot.Principal
	Conv string
	In   moltbot.TurnInput
}

func newFakeChat() *fakeChat {
	return &fakeChat{convs: map[string]string{}, external: map[string]bool{}, ran: make(chan fakeTurn, 64)}
}

func (f *fakeChat) Turn(ctx context.Context, p *moltbot.Principal, conv string, in moltbot.TurnInput) (*moltbot.TurnResult, error) {
	f.mu.Lock()
	if _, ok := f.convs[conv]; !ok {
		f.mu.Unlock()
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", conv)
	}
	n := len(f.turns)
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if err := fail(ctx, n); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := conv + "/" + in.ExternalID
	if f.external[k] {
		return &moltbot.TurnResult{Replayed: true}, nil
	}
	f.external[k] = true
	t := fakeTurn{P: *p, Conv: conv, In: in}
	f.turns = append(f.turns, t)
	f.ran <- t
	return &moltbot.TurnResult{Message: moltbot.Message{Role: moltbot.RoleAssistant, Content: "ok"}}, nil
}

func (f *fakeChat) Create(ctx context.Context, p *moltbot.Principal, o moltbot.NewConversation) (*moltbot.Conversation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	if _, ok := f.convs[o.ID]; ok {
		return nil, moltbot.Errorf(moltbot.EConflict, "conversation %q exists", o.ID)
	}
	f.convs[o.ID] = p.User
	return &moltbot.Conversation{ID: o.ID}, nil
}

func (f *fakeChat) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.turns)
}

// toy is an adapter type for the core's tests: it records what it is
// asked to send and type, echoes requests, and runs Run as told.
type toy struct {
	host Host
	cfg  Config

	mu      sync.Mutex
	sent    []string // address: text
	typing  int
	sendErr error
	runs    int
	running bool
}

type toyType struct {
	mu    sync.Mutex
	made  []*toy
	run   func(ctx context.Context, t *toy) error
	sends chan string
}

func (tt *toyType) Type() Type {
	return Type{Name: "toy", Options: []string{"x"}, New: func(c Config, h Host) (Adapter, error) {
		t := &toy{host: h, cfg: c}
		tt.mu.Lock()
		tt.made = append(tt.made, t)
		tt.mu.Unlock()
		return &toyAdapter{t: t, tt: tt}, nil
	}}
}

func (tt *toyType) last() *toy {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.made[len(tt.made)-1]
}

type toyAdapter struct {
	t  *toy
	tt *toyType
}

func (a *toyAdapter) Run(ctx context.Context) error {
	a.t.mu.Lock()
	a.t.runs++
	a.t.running = true
	a.t.mu.Unlock()
	defer func() { a.t.mu.Lock(); a.t.running = false; a.t.mu.Unlock() }()
	if a.tt.run == nil {
		a.t.host.Report(StateConnected, nil)
		<-ctx.Done()
		return nil
	}
	return a.tt.run(ctx, a.t)
}

func (a *toyAdapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
}

func (a *toyAdapter) Send(ctx context.Context, address string, m moltbot.Message) error {
	a.t.mu.Lock()
	err := a.t.sendErr
	if err == nil {
		a.t.sent = append(a.t.sent, address+": "+m.Content)
	}
	a.t.mu.Unlock()
	if err == nil && a.tt.sends != nil {
		a.tt.sends <- address + ": " + m.Content
	}
	return err
}

func (a *toyAdapter) Typing(ctx context.Context, address string) error {
	a.t.mu.Lock()
	a.t.typing++
	a.t.mu.Unlock()
	return nil
}

func (t *toy) snapshot() (sent []string, typing, runs int, running bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.sent...), t.typing, t.runs, t.running
}

type env struct {
	core  *Core
	chat  *fakeChat
	toys  *toyType
	mem   *storage.Memory
	met   *metrics.Registry
	clock *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func spec(tt *toyType, name, keying string) Spec {
	return Spec{Config: Config{Name: name, Type: "toy", Bot: "support", Tenant: "acme", Conversations: keying}, Type: tt.Type()}
}

// newEnv starts a core over mem (a fresh store when nil) with one toy
// channel "c1".
func newEnv(t *testing.T, mem *storage.Memory, chat *fakeChat, mod func(*CoreConfig), specs ...Spec) *env {
	t.Helper()
	if mem == nil {
		mem = storage.NewMemory()
	}
	if chat == nil {
		chat = newFakeChat()
	}
	e := &env{chat: chat, toys: &toyType{}, mem: mem, met: metrics.New(""), clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}}
	cfg := CoreConfig{Chat: chat, Inbox: mem.Namespace(storage.ChannelsInbox), State: mem.Namespace(storage.ChannelsState), Metrics: e.met,
		Space: func(tenant string) (string, error) { return tenant + ":inc1", nil }, Now: e.clock.Now, TypingEvery: time.Hour,
		RetryBase: time.Millisecond, Workers: 2}
	if mod != nil {
		mod(&cfg)
	}
	e.core = NewCore(cfg)
	if len(specs) == 0 {
		specs = []Spec{spec(e.toys, "c1", PerUser)}
	} else {
		for i := range specs {
			specs[i].Type = e.toys.Type()
		}
	}
	if err := e.core.Set(specs); err != nil {
		t.Fatal(err)
	}
	if err := e.core.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.core.Close)
	return e
}

func (e *env) host(name string) Host { return e.core.channel(name) }

func waitTurn(t *testing.T, f *fakeChat) fakeTurn {
	t.Helper()
	select {
	case tr := <-f.ran:
		return tr
	case <-time.After(10 * time.Second):
		t.Fatal("no turn ran")
	}
	return fakeTurn{}
}

func msg(id, user, text string) Message {
	return Message{ID: id, User: user, Chat: "room1", Text: text, Reply: "room1/" + id}
}

func inboxLen(t *testing.T, mem *storage.Memory) int {
	n := 0
	if err := mem.Namespace(storage.ChannelsInbox).Scan(func(string, []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// An accepted message is a turn of its conversation (made on first use)
// for the channel's bot, tenant and space, as the platform user, with the
// channel's external id and the reply's destination; a duplicate is
// refused while it waits and after it was answered.
func TestAcceptRunsTurn(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	h := e.host("c1")
	if err := h.Accept(context.Background(), msg("m1", "U1", "hello")); err != nil {
		t.Fatal(err)
	}
	tr := waitTurn(t, e.chat)
	want := moltbot.Principal{Tenant: "acme", Space: "acme:inc1", Scope: moltbot.ScopeChat, Method: "channel", Channel: "toy:c1", Bot: "support",
		User: "U1", UserBound: true}
	if tr.P != want {
		t.Fatalf("principal %+v, want %+v", tr.P, want)
	}
	if tr.In.Content != "hello" || tr.In.ExternalID != "c1:m1" || *tr.In.ReplyTo != (moltbot.Destination{Channel: "c1", Address: "room1/m1"}) {
		t.Fatalf("turn input %+v", tr.In)
	}
	if tr.Conv != ConversationID("c1", PerUser, msg("m1", "U1", "")) || !strings.HasPrefix(tr.Conv, "ch:c1:") || !moltbot.ValidID(tr.Conv) {
		t.Fatalf("conversation %q", tr.Conv)
	}
	testutil.Eventually(t, 5*time.Second, "the inbox empties", func() bool { return inboxLen(t, e.mem) == 0 })
	if err := h.Accept(context.Background(), msg("m1", "U1", "hello")); !errors.Is(err, ErrDuplicate) || errors.Is(err, ErrInFlight) {
		t.Fatalf("a delivery answered before: %v, want ErrDuplicate, not in flight", err)
	}
	_, typing, _, _ := e.toys.last().snapshot()
	if typing < 1 {
		t.Fatal("Typing was not called while the turn ran")
	}
	// The second message of the same user and chat: the same
	// conversation, not created again.
	if err := h.Accept(context.Background(), msg("m2", "U1", "again")); err != nil {
		t.Fatal(err)
	}
	if tr2 := waitTurn(t, e.chat); tr2.Conv != tr.Conv {
		t.Fatalf("second message in %q, want %q", tr2.Conv, tr.Conv)
	}
	if e.chat.creates != 1 {
		t.Fatalf("%d creates, want 1", e.chat.creates)
	}
	st, _ := e.core.StatusOf("c1")
	if st.Counters.Accepted != 2 || st.Counters.Duplicates != 1 || st.LastEvent.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

// While a message waits (its turn held), a second delivery of it is a
// duplicate: one turn.
func TestDuplicateWhilePending(t *testing.T) {
	release := make(chan struct{})
	chat := newFakeChat()
	chat.fail = func(ctx context.Context, n int) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	e := newEnv(t, nil, chat, nil)
	h := e.host("c1")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.Accept(context.Background(), msg("same", "U1", "hi")) }()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrDuplicate) || !errors.Is(err, ErrInFlight):
			t.Fatalf("a delivery of a message waiting: %v, want ErrDuplicate and ErrInFlight", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d deliveries accepted, want 1", ok)
	}
	close(release)
	waitTurn(t, chat)
	testutil.Eventually(t, 5*time.Second, "the inbox empties", func() bool { return inboxLen(t, e.mem) == 0 })
	if n := chat.count(); n != 1 {
		t.Fatalf("%d turns, want 1", n)
	}
}

// Conversations are keyed per user and chat, per chat, or per thread.
func TestConversationKeying(t *testing.T) {
	a := Message{ID: "1", User: "U1", Chat: "C1", Thread: "T1"}
	b := Message{ID: "2", User: "U2", Chat: "C1", Thread: "T1"}
	c := Message{ID: "3", User: "U1", Chat: "C1", Thread: "T2"}
	d := Message{ID: "4", User: "U1", Chat: "C2"}
	top := Message{ID: "5", User: "U1", Chat: "C1"}
	id := ConversationID
	for _, tc := range []struct {
		keying     string
		same, diff [][2]Message
	}{
		{PerUser, [][2]Message{{a, c}}, [][2]Message{{a, b}, {a, d}}},
		{PerChat, [][2]Message{{a, b}, {a, c}}, [][2]Message{{a, d}}},
		{PerThread, [][2]Message{{a, b}}, [][2]Message{{a, c}, {a, d}, {a, top}}},
	} {
		for _, p := range tc.same {
			if id("x", tc.keying, p[0]) != id("x", tc.keying, p[1]) {
				t.Errorf("%s: messages %s and %s in different conversations", tc.keying, p[0].ID, p[1].ID)
			}
		}
		for _, p := range tc.diff {
			if id("x", tc.keying, p[0]) == id("x", tc.keying, p[1]) {
				t.Errorf("%s: messages %s and %s in one conversation", tc.keying, p[0].ID, p[1].ID)
			}
		}
	}
	if id("x", PerUser, a) == id("y", PerUser, a) {
		t.Error("two channels share a conversation")
	}
	// A chat keyed per chat is not user-bound: another author speaks in it.
	e := newEnv(t, nil, nil, nil, Spec{Config: Config{Name: "room", Type: "toy", Tenant: "default", Conversations: PerChat}})
	if err := e.host("room").Accept(context.Background(), Message{ID: "1", User: "U1", Chat: "C", Text: "a"}); err != nil {
		t.Fatal(err)
	}
	if tr := waitTurn(t, e.chat); tr.P.UserBound || tr.P.Bot != "" || tr.P.Tenant != "default" {
		t.Fatalf("a chat-keyed channel's principal %+v", tr.P)
	}
}

// A message accepted before the node stopped (its turn canceled) is in
// the inbox and runs when a core opens the same store again.
func TestInboxReplayAfterRestart(t *testing.T) {
	mem := storage.NewMemory()
	held := newFakeChat()
	started := make(chan struct{}, 4)
	held.fail = func(ctx context.Context, n int) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	e := newEnv(t, mem, held, nil)
	for _, id := range []string{"a", "b"} {
		if err := e.host("c1").Accept(context.Background(), msg(id, "U"+id, "text "+id)); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	if st, _ := e.core.StatusOf("c1"); st.Pending != 2 {
		t.Fatalf("pending %d, want 2", st.Pending)
	}
	e.core.Close()
	if n := inboxLen(t, mem); n != 2 {
		t.Fatalf("%d messages in the inbox after the stop, want 2", n)
	}
	chat := newFakeChat()
	// The conversations exist from the first life (one was created).
	maps := func() {
		held.mu.Lock()
		defer held.mu.Unlock()
		for k, v := range held.convs {
			chat.convs[k] = v
		}
	}
	maps()
	e2 := newEnv(t, mem, chat, nil)
	got := map[string]bool{}
	for range 2 {
		got[waitTurn(t, chat).In.Content] = true
	}
	if !got["text a"] || !got["text b"] {
		t.Fatalf("replayed %v", got)
	}
	testutil.Eventually(t, 5*time.Second, "the inbox empties", func() bool { return inboxLen(t, mem) == 0 })
	// Answered: a late retry is a duplicate, and nothing runs twice.
	if err := e2.host("c1").Accept(context.Background(), msg("a", "Ua", "text a")); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("a retry after the replay: %v", err)
	}
	if n := chat.count(); n != 2 {
		t.Fatalf("%d turns, want 2", n)
	}
}

// A turn that the conversation answers from its history (another node
// ran it) is counted a duplicate and sends nothing itself.
func TestReplayedTurnIsDuplicate(t *testing.T) {
	chat := newFakeChat()
	conv := ConversationID("c1", PerUser, msg("m1", "U1", ""))
	chat.convs[conv] = "U1"
	chat.external[conv+"/c1:m1"] = true // another node ran it
	e := newEnv(t, nil, chat, nil)
	if err := e.host("c1").Accept(context.Background(), msg("m1", "U1", "hi")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "counted", func() bool {
		st, _ := e.core.StatusOf("c1")
		return st.Counters.Duplicates == 1 && st.Pending == 0
	})
	if sent, _, _, _ := e.toys.last().snapshot(); len(sent) != 0 {
		t.Fatalf("sent %v", sent)
	}
}

// Bots are dropped unless allow_bots; empty messages are refused; both
// counted.
func TestDrops(t *testing.T) {
	e := newEnv(t, nil, nil, nil, Spec{Config: Config{Name: "c1", Type: "toy", Tenant: "default"}},
		Spec{Config: Config{Name: "bots", Type: "toy", Tenant: "default"}, AllowBots: true})
	bot := msg("b1", "B", "beep")
	bot.FromBot = true
	if err := e.host("c1").Accept(context.Background(), bot); !errors.Is(err, ErrRefused) {
		t.Fatalf("a bot's message: %v", err)
	}
	if err := e.host("c1").Accept(context.Background(), msg("e1", "U", "  \n")); !errors.Is(err, ErrRefused) {
		t.Fatalf("an empty message: %v", err)
	}
	img := msg("i1", "U", "")
	img.Images = []moltbot.Part{{Type: moltbot.PartImage, MIME: "image/png", Data: []byte{1}}}
	if err := e.host("c1").Accept(context.Background(), img); err != nil {
		t.Fatalf("an image without text: %v", err)
	}
	if tr := waitTurn(t, e.chat); len(tr.In.Parts) != 2 || tr.In.Parts[1].Type != moltbot.PartImage {
		t.Fatalf("image turn %+v", tr.In)
	}
	if err := e.host("bots").Accept(context.Background(), bot); err != nil {
		t.Fatalf("a bot's message on allow_bots: %v", err)
	}
	st, _ := e.core.StatusOf("c1")
	if st.Counters.DroppedBot != 1 || st.Counters.Empty != 1 || st.Counters.Accepted != 1 {
		t.Fatalf("counters %+v", st.Counters)
	}
	for _, bad := range []Message{{ID: "", Text: "x"}, {ID: strings.Repeat("i", MaxIDLen+1), Text: "x"},
		{ID: "r", Text: "x", Reply: strings.Repeat("r", MaxReplyLen+1)}} {
		if err := e.host("c1").Accept(context.Background(), bad); !errors.Is(err, ErrRefused) {
			t.Errorf("%.20q: %v, want ErrRefused", bad.ID, err)
		}
	}
}

// A (chat, author) pair gets Budget messages a Window, then Cooldown of
// refusals; others are not held back.
func TestPairBudget(t *testing.T) {
	e := newEnv(t, nil, nil, func(c *CoreConfig) { c.Budget, c.Window, c.Cooldown = 3, time.Minute, time.Minute })
	h := e.host("c1")
	for i := range 3 {
		if err := h.Accept(context.Background(), msg(fmt.Sprint("a", i), "U1", "x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Accept(context.Background(), msg("a3", "U1", "x")); !errors.Is(err, ErrRefused) {
		t.Fatalf("over the budget: %v", err)
	}
	if err := h.Accept(context.Background(), msg("b0", "U2", "x")); err != nil {
		t.Fatalf("another author: %v", err)
	}
	e.clock.Add(59 * time.Second)
	if err := h.Accept(context.Background(), msg("a4", "U1", "x")); !errors.Is(err, ErrRefused) {
		t.Fatalf("in the cooldown: %v", err)
	}
	e.clock.Add(2 * time.Second)
	if err := h.Accept(context.Background(), msg("a5", "U1", "x")); err != nil {
		t.Fatalf("after the cooldown: %v", err)
	}
	if st, _ := e.core.StatusOf("c1"); st.Counters.Budget != 2 {
		t.Fatalf("dropped_budget %d, want 2", st.Counters.Budget)
	}
}

// A client error answers the user with a notice through the same
// destination and is not tried again; a server error is tried again with
// backoff, then given up with a notice.
func TestTurnFailures(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		chat := newFakeChat()
		chat.fail = func(context.Context, int) error {
			return &moltbot.Error{Code: moltbot.EQuota, Message: "tenant acme is at its quota"}
		}
		e := newEnv(t, nil, chat, nil)
		e.toys.sends = make(chan string, 4)
		if err := e.host("c1").Accept(context.Background(), msg("m", "U", "x")); err != nil {
			t.Fatal(err)
		}
		if got := <-e.toys.sends; !strings.HasPrefix(got, "room1/m: ") || !strings.Contains(got, "quota") {
			t.Fatalf("notice %q", got)
		}
		testutil.Eventually(t, 5*time.Second, "settled", func() bool { return inboxLen(t, e.mem) == 0 })
		if st, _ := e.core.StatusOf("c1"); st.Counters.Failed != 1 || st.Counters.Sent != 1 {
			t.Fatalf("counters %+v", st.Counters)
		}
	})
	t.Run("server, then ok", func(t *testing.T) {
		chat := newFakeChat()
		var mu sync.Mutex
		calls := 0
		chat.fail = func(context.Context, int) error {
			mu.Lock()
			defer mu.Unlock()
			if calls++; calls <= 2 {
				return moltbot.Errorf(moltbot.EUnavailable, "the model is down")
			}
			return nil
		}
		e := newEnv(t, nil, chat, nil)
		if err := e.host("c1").Accept(context.Background(), msg("m", "U", "x")); err != nil {
			t.Fatal(err)
		}
		waitTurn(t, chat)
		testutil.Eventually(t, 5*time.Second, "settled", func() bool { return inboxLen(t, e.mem) == 0 })
		if st, _ := e.core.StatusOf("c1"); st.Counters.Failed != 0 {
			t.Fatalf("counters %+v", st.Counters)
		}
	})
	t.Run("server, given up", func(t *testing.T) {
		chat := newFakeChat()
		chat.fail = func(context.Context, int) error { return moltbot.Errorf(moltbot.EUnavailable, "the model is down") }
		e := newEnv(t, nil, chat, func(c *CoreConfig) { c.Attempts = 3 })
		e.toys.sends = make(chan string, 4)
		if err := e.host("c1").Accept(context.Background(), msg("m", "U", "x")); err != nil {
			t.Fatal(err)
		}
		if got := <-e.toys.sends; !strings.Contains(got, "could not answer") {
			t.Fatalf("notice %q", got)
		}
		testutil.Eventually(t, 5*time.Second, "settled", func() bool { return inboxLen(t, e.mem) == 0 })
		if st, _ := e.core.StatusOf("c1"); st.Counters.Failed != 1 {
			t.Fatalf("counters %+v", st.Counters)
		}
	})
}

// placement is a ring the test moves.
type placement struct {
	mu    sync.Mutex
	owner string
	self  string
	ch    chan struct{}
}

func (p *placement) Owner(key string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.owner, p.owner == p.self && p.owner != ""
}

func (p *placement) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch
}

func (p *placement) move(owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.owner = owner
	close(p.ch)
	p.ch = make(chan struct{})
}

// Run runs where the ring puts the channel: started on its owner, stopped
// when it moves away (elsewhere, naming the node), started again when it
// comes back.
func TestRunPlacement(t *testing.T) {
	p := &placement{owner: "n2", self: "n1", ch: make(chan struct{})}
	e := newEnv(t, nil, nil, func(c *CoreConfig) { c.Placement, c.Self = p, "n1" })
	toy := e.toys.last()
	if st, _ := e.core.StatusOf("c1"); st.State != StateElsewhere || st.Node != "n2" {
		t.Fatalf("status %+v", st)
	}
	p.move("n1")
	testutil.Eventually(t, 5*time.Second, "Run starts here", func() bool { _, _, _, r := toy.snapshot(); return r })
	testutil.Eventually(t, 5*time.Second, "connected", func() bool { st, _ := e.core.StatusOf("c1"); return st.State == StateConnected && st.Node == "n1" })
	p.move("n3")
	testutil.Eventually(t, 5*time.Second, "Run stops here", func() bool { _, _, _, r := toy.snapshot(); return !r })
	testutil.Eventually(t, 5*time.Second, "elsewhere", func() bool { st, _ := e.core.StatusOf("c1"); return st.State == StateElsewhere && st.Node == "n3" })
	p.move("n1")
	testutil.Eventually(t, 5*time.Second, "Run again", func() bool { _, _, runs, r := toy.snapshot(); return r && runs == 2 })
}

// A failing Run is restarted with backoff; a Fatal one stops for good.
func TestRunFailures(t *testing.T) {
	tt := &toyType{}
	calls := make(chan int, 8)
	tt.run = func(ctx context.Context, toy *toy) error {
		_, _, runs, _ := toy.snapshot()
		calls <- runs
		if runs == 1 {
			return errors.New("connection reset")
		}
		return Fatal(errors.New("invalid_auth"))
	}
	e := &env{chat: newFakeChat(), mem: storage.NewMemory(), met: metrics.New("")}
	e.core = NewCore(CoreConfig{Chat: e.chat, Inbox: e.mem.Namespace(storage.ChannelsInbox), Metrics: e.met})
	if err := e.core.Set([]Spec{{Config: Config{Name: "c1", Type: "toy", Tenant: "default"}, Type: tt.Type()}}); err != nil {
		t.Fatal(err)
	}
	if err := e.core.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.core.Close()
	<-calls
	<-calls // after a backoff of 0.5 to 1 s
	testutil.Eventually(t, 5*time.Second, "fatal", func() bool {
		st, _ := e.core.StatusOf("c1")
		return st.State == StateFatal && strings.Contains(st.LastError, "invalid_auth")
	})
	e.core.place()
	select {
	case n := <-calls:
		t.Fatalf("a fatal Run was started again (run %d)", n)
	default:
	}
}

// Inbound requests reach the adapter with the prefix stripped and the
// body capped; an unknown channel is 404.
func TestServeHTTP(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	srv := httptest.NewServer(e.core)
	defer srv.Close()
	get := func(method, path string, body io.Reader) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("POST", "/channels/c1/events/x?y=1", strings.NewReader("abc")); code != 200 || body != "POST /events/x 3" {
		t.Fatalf("%d %q", code, body)
	}
	if code, body := get("GET", "/channels/c1", nil); code != 200 || body != "GET / 0" {
		t.Fatalf("%d %q", code, body)
	}
	if code, _ := get("GET", "/channels/nope/", nil); code != 404 {
		t.Fatalf("unknown channel: %d", code)
	}
	if code, _ := get("POST", "/channels/c1/", strings.NewReader(strings.Repeat("x", MaxBody+1))); code != 413 {
		t.Fatalf("oversize: %d", code)
	}
	// A body without a length (chunked) is capped while read.
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte(strings.Repeat("x", MaxBody+10))); pw.Close() }()
	if code, _ := get("POST", "/channels/c1/", pr); code != 413 {
		t.Fatalf("oversize, chunked: %d", code)
	}
}

// Get/Put keep each channel's state apart, at most 4 KiB a value; Deliver
// and Test reach the adapter's Send, counted.
func TestStateAndSend(t *testing.T) {
	e := newEnv(t, nil, nil, nil, Spec{Config: Config{Name: "a", Type: "toy", Tenant: "default"}}, Spec{Config: Config{Name: "b", Type: "toy", Tenant: "default"}})
	a, b := e.host("a"), e.host("b")
	testutil.Eventually(t, 5*time.Second, "a connected", func() bool { st, _ := e.core.StatusOf("a"); return st.State == StateConnected })
	if err := a.Put("offset", []byte("42")); err != nil {
		t.Fatal(err)
	}
	if v, ok := a.Get("offset"); !ok || string(v) != "42" {
		t.Fatalf("get %q %v", v, ok)
	}
	if _, ok := b.Get("offset"); ok {
		t.Fatal("channel b sees a's state")
	}
	if err := a.Put("big", make([]byte, MaxStateValue+1)); err == nil {
		t.Fatal("a value over 4 KiB was kept")
	}
	if err := e.core.Deliver(context.Background(), "default", "conv", moltbot.Destination{Channel: "a", Address: "chat9"}, moltbot.Message{Content: "reply"}); err != nil {
		t.Fatal(err)
	}
	if err := e.core.Deliver(context.Background(), "default", "conv", moltbot.Destination{Channel: "zz", Address: "chat9"}, moltbot.Message{}); err == nil {
		t.Fatal("delivered to a channel that does not exist")
	}
	if err := e.core.Test(context.Background(), "a", "chat9", "ping"); err != nil {
		t.Fatal(err)
	}
	if err := e.core.Test(context.Background(), "a", "", "ping"); moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Fatalf("a test without an address: %v", err)
	}
	var toyA *toy
	for _, x := range e.toys.made {
		if x.cfg.Name == "a" {
			toyA = x
		}
	}
	toyA.mu.Lock()
	toyA.sendErr = errors.New("platform down")
	toyA.mu.Unlock()
	if err := e.core.Test(context.Background(), "a", "chat9", "ping"); moltbot.ErrorCode(err) != moltbot.EUnavailable {
		t.Fatalf("a failing send: %v", err)
	}
	sent, _, _, _ := toyA.snapshot()
	st, _ := e.core.StatusOf("a")
	if len(sent) != 2 || sent[0] != "chat9: reply" || sent[1] != "chat9: ping" || st.Counters.Sent != 2 || st.Counters.SendFailed != 1 ||
		!strings.Contains(st.LastError, "platform down") {
		t.Fatalf("sent %v, status %+v", sent, st)
	}
}

// Set keeps an unchanged channel's adapter and Run; a changed one gets a
// new adapter (the old Run stopped); a removed one stops.
func TestSetReload(t *testing.T) {
	e := newEnv(t, nil, nil, nil, Spec{Config: Config{Name: "a", Type: "toy", Tenant: "default"}}, Spec{Config: Config{Name: "b", Type: "toy", Tenant: "default"}})
	testutil.Eventually(t, 5*time.Second, "both run", func() bool {
		n := 0
		for _, x := range e.toys.made {
			if _, _, _, r := x.snapshot(); r {
				n++
			}
		}
		return n == 2
	})
	oldA, oldB := e.toys.made[0], e.toys.made[1]
	if oldA.cfg.Name != "a" {
		oldA, oldB = oldB, oldA
	}
	next := []Spec{{Config: Config{Name: "a", Type: "toy", Tenant: "default"}, Type: e.toys.Type()},
		{Config: Config{Name: "c", Type: "toy", Tenant: "default", Options: map[string]string{"x": "1"}}, Type: e.toys.Type()}}
	if err := e.core.Set(next); err != nil {
		t.Fatal(err)
	}
	if len(e.toys.made) != 3 {
		t.Fatalf("%d adapters made, want 3 (a kept)", len(e.toys.made))
	}
	if _, _, _, r := oldB.snapshot(); r {
		t.Fatal("the removed channel's Run still runs")
	}
	if _, _, runs, r := oldA.snapshot(); !r || runs != 1 {
		t.Fatal("the unchanged channel's Run was restarted")
	}
	next[1].Config.Options = map[string]string{"x": "2"}
	if err := e.core.Set(next); err != nil {
		t.Fatal(err)
	}
	if len(e.toys.made) != 4 {
		t.Fatalf("%d adapters made, want 4 (c changed)", len(e.toys.made))
	}
	if got := e.core.Names(); strings.Join(got, ",") != "a,c" {
		t.Fatalf("names %v", got)
	}
}

// A core without channels starts no goroutine.
func TestIdleCore(t *testing.T) {
	mem := storage.NewMemory()
	c := NewCore(CoreConfig{Chat: newFakeChat(), Inbox: mem.Namespace(storage.ChannelsInbox)})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.mu.RLock()
	running := c.q.running
	c.mu.RUnlock()
	if running {
		t.Fatal("workers started on a node without channels")
	}
}

// The inbox is replayed in the order the messages were accepted (its keys
// are hashes): one conversation's turns run in order after a restart.
func TestReplayKeepsOrder(t *testing.T) {
	mem := storage.NewMemory()
	held := newFakeChat()
	held.fail = func(ctx context.Context, n int) error { <-ctx.Done(); return ctx.Err() }
	e := newEnv(t, mem, held, func(c *CoreConfig) { c.Workers = 1 })
	var want []string
	for i := range 12 {
		text := fmt.Sprint("message ", i)
		want = append(want, text)
		if err := e.host("c1").Accept(context.Background(), msg(fmt.Sprint("id-", i), "U1", text)); err != nil {
			t.Fatal(err)
		}
	}
	e.core.Close()
	chat := newFakeChat()
	chat.convs[ConversationID("c1", PerUser, msg("", "U1", ""))] = "U1"
	newEnv(t, mem, chat, nil)
	for i := range want {
		if got := waitTurn(t, chat).In.Content; got != want[i] {
			t.Fatalf("turn %d: %q, want %q", i, got, want[i])
		}
	}
}

// A message tried again later holds its conversation's next messages
// back: they run after it, in order; another conversation does not wait.
func TestRetryKeepsOrder(t *testing.T) {
	chat := newFakeChat()
	failed := make(chan struct{})
	var once sync.Once
	chat.fail = func(ctx context.Context, n int) error {
		err := error(nil)
		once.Do(func() { err = moltbot.Errorf(moltbot.EUnavailable, "the model is down"); close(failed) })
		return err
	}
	e := newEnv(t, nil, chat, func(c *CoreConfig) { c.Workers, c.RetryBase = 1, 200*time.Millisecond })
	h := e.host("c1")
	if err := h.Accept(context.Background(), msg("1", "U1", "first")); err != nil {
		t.Fatal(err)
	}
	<-failed
	for _, m := range []Message{msg("2", "U1", "second"), msg("3", "U2", "other"), msg("4", "U1", "third")} {
		if err := h.Accept(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	other := false
	for range 4 {
		if c := waitTurn(t, chat).In.Content; c == "other" {
			other = true
		} else {
			got = append(got, c)
		}
	}
	if strings.Join(got, ",") != "first,second,third" || !other {
		t.Fatalf("U1's turns ran %v, want first, second, third (and U2's too: %v)", got, other)
	}
}

// The mount's routing: any path is an adapter's (under its prefix, the
// rest starting with "/") or a 404, never a panic.
func FuzzServeHTTP(f *testing.F) {
	f.Add("/channels/c1/x")
	f.Add("/channels/c1")
	f.Add("/channels//")
	f.Add("/channels/../v1/admin")
	f.Add("/channels/c1/%2e%2e/")
	mem := storage.NewMemory()
	tt := &toyType{}
	c := NewCore(CoreConfig{Chat: newFakeChat(), Inbox: mem.Namespace(storage.ChannelsInbox)})
	if err := c.Set([]Spec{{Config: Config{Name: "c1", Type: "toy", Tenant: "default"}, Type: tt.Type()}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = path
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		switch {
		case w.Code == 200:
			rest, ok := strings.CutPrefix(path, "/channels/c1")
			if !ok || (rest != "" && rest[0] != '/') || !strings.HasPrefix(w.Body.String(), "GET /") {
				t.Fatalf("%q reached the adapter as %q", path, w.Body.String())
			}
		case w.Code != 404:
			t.Fatalf("%q: %d", path, w.Code)
		}
	})
}

// The inbox is bounded: past MaxPending, Accept is EBusy (the platform
// tries again later) and nothing is written; while a turn runs, Typing
// is called again and again.
func TestInboxBoundAndTyping(t *testing.T) {
	release := make(chan struct{})
	chat := newFakeChat()
	chat.fail = func(ctx context.Context, n int) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	e := newEnv(t, nil, chat, func(c *CoreConfig) { c.MaxPending, c.TypingEvery = 2, time.Millisecond })
	h := e.host("c1")
	for _, id := range []string{"a", "b"} {
		if err := h.Accept(context.Background(), msg(id, "U"+id, "x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Accept(context.Background(), msg("c", "Uc", "x")); moltbot.ErrorCode(err) != moltbot.EBusy {
		t.Fatalf("past the bound: %v", err)
	}
	if n := inboxLen(t, e.mem); n != 2 {
		t.Fatalf("%d in the inbox, want 2", n)
	}
	testutil.Eventually(t, 5*time.Second, "typing, again", func() bool { _, typing, _, _ := e.toys.last().snapshot(); return typing >= 3 })
	close(release)
	testutil.Eventually(t, 5*time.Second, "the inbox empties", func() bool { return inboxLen(t, e.mem) == 0 })
	if err := h.Accept(context.Background(), msg("c", "Uc", "x")); err != nil {
		t.Fatalf("with room again: %v", err)
	}
}

// In a cluster the running node shares its Run's state and last error
// through the channel's state: another node's status shows them beside
// "elsewhere".
func TestRunStateShared(t *testing.T) {
	shared := storage.NewMemory().Namespace(storage.ChannelsState) // what replication makes of it
	mk := func(self string, tt *toyType) *Core {
		p := &placement{owner: "n1", self: self, ch: make(chan struct{})}
		mem := storage.NewMemory()
		c := NewCore(CoreConfig{Chat: newFakeChat(), Inbox: mem.Namespace(storage.ChannelsInbox), State: shared, Placement: p, Self: self})
		if err := c.Set([]Spec{{Config: Config{Name: "c1", Type: "toy", Tenant: "default"}, Type: tt.Type()}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	tt := &toyType{}
	fail := make(chan struct{})
	tt.run = func(ctx context.Context, toy *toy) error {
		toy.host.Report(StateConnected, nil)
		select {
		case <-fail:
			return errors.New("socket closed by the platform")
		case <-ctx.Done():
			return nil
		}
	}
	a, b := mk("n1", tt), mk("n2", &toyType{})
	testutil.Eventually(t, 5*time.Second, "n2 shows n1's run connected", func() bool {
		st, _ := b.StatusOf("c1")
		return st.State == StateElsewhere && st.Node == "n1" && st.RunState == StateConnected
	})
	close(fail)
	testutil.Eventually(t, 5*time.Second, "n2 shows n1's error", func() bool {
		st, _ := b.StatusOf("c1")
		return st.RunState == StateBackoff && strings.Contains(st.LastError, "socket closed")
	})
	if st, _ := a.StatusOf("c1"); st.RunState != "" || st.State == StateElsewhere {
		t.Fatalf("the running node's own status %+v", st)
	}
	if err := a.channel("c1").Put("#run", []byte("x")); err == nil {
		t.Fatal("an adapter wrote the core's key")
	}
}

// The inbox is bounded in bytes as well as in messages: what waits is
// held in memory too, images included, and a few hundred messages of
// four 5 MiB images would fill an edge device long before MaxPending's
// 10,000. Past MaxPendingBytes Accept is EBusy and nothing is written; an
// empty inbox takes one message of any size; room again, it accepts.
func TestInboxBoundBytes(t *testing.T) {
	release := make(chan struct{})
	chat := newFakeChat()
	chat.fail = func(ctx context.Context, n int) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	if c := (CoreConfig{}); func() bool { c.fill(); return c.MaxPendingBytes <= 0 || c.MaxPendingBytes > 128<<20 }() {
		t.Fatal("the default MaxPendingBytes is not a bound for a 512 MB device")
	}
	e := newEnv(t, nil, chat, func(c *CoreConfig) { c.MaxPendingBytes = 1 << 20 })
	h := e.host("c1")
	img := moltbot.Part{Type: moltbot.PartImage, MIME: "image/png", Data: make([]byte, 300<<10)}
	big := func(id string) Message {
		m := msg(id, "U"+id, "look")
		m.Images = []moltbot.Part{img}
		return m
	}
	// The first is taken whatever its size (an empty inbox), then what fits.
	first := big("a")
	first.Images = []moltbot.Part{img, img, img, img}
	if err := h.Accept(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	if err := h.Accept(context.Background(), big("b")); moltbot.ErrorCode(err) != moltbot.EBusy {
		t.Fatalf("past the bytes' bound: %v", err)
	}
	if n := inboxLen(t, e.mem); n != 1 {
		t.Fatalf("%d in the inbox, want 1", n)
	}
	// A small message does not fit either: the bound is the bytes waiting.
	if err := h.Accept(context.Background(), msg("c", "Uc", "x")); moltbot.ErrorCode(err) != moltbot.EBusy {
		t.Fatalf("a small one past the bound: %v", err)
	}
	close(release)
	testutil.Eventually(t, 5*time.Second, "the inbox empties", func() bool { return inboxLen(t, e.mem) == 0 })
	testutil.Eventually(t, 5*time.Second, "the bytes are given back", func() bool { n, b := e.core.q.totals(); return n == 0 && b == 0 })
	for _, id := range []string{"b", "d"} {
		if err := h.Accept(context.Background(), big(id)); err != nil {
			t.Fatalf("with room again: %v", err)
		}
	}
}

// A reply the outbox could not deliver shows in the channel's status
// (last error and its time), not only in the log: a webhook's callback
// that is down is what its operator looks for in `moltbot channels
// status`. The state stays what the adapter said.
func TestDeliverErrorInStatus(t *testing.T) {
	e := newEnv(t, nil, nil, nil, Spec{Config: Config{Name: "a", Type: "toy", Tenant: "default"}})
	testutil.Eventually(t, 5*time.Second, "a connected", func() bool { st, _ := e.core.StatusOf("a"); return st.State == StateConnected })
	toyA := e.toys.last()
	toyA.mu.Lock()
	toyA.sendErr = errors.New(`Post "https://api.telegram.org/bot123:SECRET/sendMessage": callback down`)
	toyA.mu.Unlock()
	if err := e.core.Deliver(context.Background(), "default", "conv", moltbot.Destination{Channel: "a", Address: "chat9"}, moltbot.Message{Content: "reply"}); err == nil {
		t.Fatal("a failing send delivered")
	}
	st, _ := e.core.StatusOf("a")
	if !strings.Contains(st.LastError, "callback down") || st.ErrorAt.IsZero() || st.State != StateConnected || st.Counters.SendFailed != 1 {
		t.Fatalf("status %+v", st)
	}
	if strings.Contains(st.LastError, "SECRET") {
		t.Fatalf("the status shows a token: %q", st.LastError)
	}
}

// The per-(chat, author) budget's table is bounded: authors who all
// wrote within the window (a signed webhook can name any user) cannot
// grow it without end, nor make each new author scan all of it. A pair
// already counted is still cut past its budget.
func TestPairBudgetBounded(t *testing.T) {
	var b pairBudget
	b.init(3, time.Minute, time.Minute)
	now := time.Unix(1_800_000_000, 0)
	for range 3 {
		if !b.allow("loop", now) {
			t.Fatal("within the budget: refused")
		}
	}
	for i := range 3 * maxPairs {
		b.allow("u"+strconv.Itoa(i), now.Add(time.Duration(i)*time.Microsecond))
	}
	if n := len(b.pairs); n > maxPairs {
		t.Fatalf("%d pairs kept, at most %d", n, maxPairs)
	}
	if b.allow("loop", now.Add(time.Second)) {
		t.Fatal("a pair past its budget is let in once the table is full")
	}
	later := now.Add(3 * time.Minute)
	for range 3 {
		b.allow("late", later)
	}
	if b.allow("late", later) {
		t.Fatal("a new pair is not counted after the sweep")
	}
}
