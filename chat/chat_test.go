package chat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"runtime"
	"sync/atomic"
)

// fakeRuntime keeps conversations in a map and answers each turn with
// tokens tokens "t0 t1 ...", streamed through fn.
type fakeRuntime struct {
	cache     string             // the Completion.Cache its replies say
	citations []moltbot.Citation // the Completion.Citations its replies carry
	mu        sync.Mutex
	convs     map[string]*moltbot.Conversation
	tokens    int
	turns     int
	// canceled receives the turn's context error when fn refuses a token.
	canceled  chan error
	followers []func(moltbot.Event)
	completed []moltbot.Message // the messages of the last completion
}

func newFake() *fakeRuntime {
	return &fakeRuntime{convs: map[string]*moltbot.Conversation{}, tokens: 3, canceled: make(chan error, 8)}
}

func (f *fakeRuntime) Complete(ctx context.Context, msgs []moltbot.Message, o moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	f.mu.Lock()
	f.completed = msgs
	f.mu.Unlock()
	return f.reply(ctx, fn)
}

func (f *fakeRuntime) reply(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	var b strings.Builder
	for i := 0; i < f.tokens; i++ {
		tok := fmt.Sprintf("t%d ", i)
		if fn != nil {
			if err := fn(moltbot.Chunk{Content: tok, Served: moltbot.ModelRef{Provider: "p", Model: "m"}}); err != nil {
				f.canceled <- err
				return nil, err
			}
		}
		b.WriteString(tok)
	}
	return &moltbot.Completion{Content: b.String(), Served: moltbot.ModelRef{Provider: "p", Model: "m"}, FinishReason: "stop",
		Usage: moltbot.Usage{PromptTokens: 2, CompletionTokens: f.tokens}, Cache: f.cache, Citations: f.citations}, nil
}

func (f *fakeRuntime) Create(ctx context.Context, space string, o moltbot.NewConversation) (*moltbot.Conversation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &moltbot.Conversation{Tenant: space, ID: o.ID, Model: o.Model, System: o.System, User: o.User, Bot: o.Bot}
	f.convs[space+"/"+o.ID] = c
	return c, nil
}

func (f *fakeRuntime) Get(ctx context.Context, space, id string) (*moltbot.Conversation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.convs[space+"/"+id]
	if !ok {
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	cp := *c
	return &cp, nil
}

func (f *fakeRuntime) Delete(ctx context.Context, space, id, asUser string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.convs[space+"/"+id]; ok && asUser != "" && c.User != asUser { // as the conversation actor does
		return moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	delete(f.convs, space+"/"+id)
	return nil
}

func (f *fakeRuntime) Turn(ctx context.Context, space, id string, in moltbot.TurnInput, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
	c, err := f.Get(ctx, space, id)
	if err != nil {
		return nil, err
	}
	if in.AsUser != "" && c.User != in.AsUser { // as the conversation actor does
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	f.mu.Lock()
	f.turns++
	f.mu.Unlock()
	comp, err := f.reply(ctx, fn)
	if err != nil {
		return nil, err
	}
	return &moltbot.TurnResult{Message: moltbot.Message{Role: moltbot.RoleAssistant, Content: comp.Content}, Completion: comp}, nil
}

func (f *fakeRuntime) ResolveModel(model string) error {
	if model == "" || model == moltbot.ChainModel || strings.HasPrefix(model, "p/") {
		return nil
	}
	return &moltbot.Error{Code: moltbot.ENotFound, Param: "model", Message: fmt.Sprintf("model %q not found", model)}
}

func (f *fakeRuntime) Subscribe(ctx context.Context, space, id string, fn func(moltbot.Event)) error {
	f.mu.Lock()
	f.followers = append(f.followers, fn)
	f.mu.Unlock()
	fn(moltbot.Event{Kind: moltbot.EventSubscribed})
	<-ctx.Done()
	return nil
}

func (f *fakeRuntime) Models() []moltbot.ModelInfo {
	return []moltbot.ModelInfo{{ID: moltbot.ChainModel}, {ID: "p/m", Provider: "p"}, {ID: "p/big", Provider: "p"}}
}

// fakePolicy: an allow-list per tenant, a budget of calls, and the charges.
type fakePolicy struct {
	mu      sync.Mutex
	models  map[string][]string
	calls   int // calls left; < 0: unlimited
	charged int
}

func (p *fakePolicy) RestrictsModels(tenant string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.models[tenant]) > 0
}

func (p *fakePolicy) ModelAllowed(tenant, model string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.models[tenant]
	if len(list) == 0 {
		return true
	}
	if model == "" {
		model = moltbot.ChainModel
	}
	for _, m := range list {
		if m == model {
			return true
		}
	}
	return false
}

func (p *fakePolicy) Allow(*moltbot.Principal) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls == 0 {
		return 30 * time.Second, false
	}
	p.calls--
	return 0, true
}

func (p *fakePolicy) Charge(_ *moltbot.Principal, tokens int) {
	p.mu.Lock()
	p.charged += tokens
	p.mu.Unlock()
}

func tenantA() *moltbot.Principal {
	return &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeChat, Method: "key", KeyID: "k1"}
}

func code(err error) string {
	if err == nil {
		return ""
	}
	return moltbot.ErrorCode(err)
}

func TestStoredModelCheckedOnEveryTurn(t *testing.T) {
	rt, pol := newFake(), &fakePolicy{calls: -1, models: map[string][]string{}}
	s := New(rt, pol, Config{})
	ctx, p := context.Background(), tenantA()
	if _, err := s.Create(ctx, p, moltbot.NewConversation{ID: "c1", Model: "p/big"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Turn(ctx, p, TurnRequest{Conversation: "c1", Input: moltbot.TurnInput{Content: "hi"}}); err != nil {
		t.Fatalf("turn before the allow-list: %v", err)
	}
	// The operator narrows the tenant's models: the conversation's own
	// model is no longer allowed, and its next turn says so.
	pol.mu.Lock()
	pol.models["a"] = []string{"p/m"}
	pol.mu.Unlock()
	_, err := s.Turn(ctx, p, TurnRequest{Conversation: "c1", Input: moltbot.TurnInput{Content: "hi"}})
	if code(err) != moltbot.EForbidden || !strings.Contains(err.Error(), `"p/big"`) {
		t.Fatalf("turn on a model no longer allowed: %v", err)
	}
	// Asking for an allowed model explicitly is fine.
	if _, err := s.Turn(ctx, p, TurnRequest{Conversation: "c1", Input: moltbot.TurnInput{Content: "hi", Options: moltbot.ChatOptions{Model: "p/m"}}}); err != nil {
		t.Fatalf("turn with an allowed model: %v", err)
	}
	if _, err := s.Create(ctx, p, moltbot.NewConversation{ID: "c2", Model: "p/big"}); code(err) != moltbot.EForbidden {
		t.Fatalf("create with a model not allowed: %v", err)
	}
}

func TestCreateSpendsTheRateLimit(t *testing.T) {
	rt, pol := newFake(), &fakePolicy{calls: 2}
	met := metrics.New("test")
	s := New(rt, pol, Config{Metrics: met})
	ctx, p := context.Background(), tenantA()
	for i := 0; i < 2; i++ {
		if _, err := s.Create(ctx, p, moltbot.NewConversation{ID: fmt.Sprint("c", i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Create(ctx, p, moltbot.NewConversation{ID: "c9"})
	var me *moltbot.Error
	if !errors.As(err, &me) || me.Code != moltbot.ERateLimited || me.RetryAfter != 30*time.Second {
		t.Fatalf("third create: %v", err)
	}
	if _, err := rt.Get(ctx, "a", "c9"); err == nil {
		t.Fatal("a refused create stored a conversation")
	}
	if met.Sum(metrics.RateLimited) != 1 {
		t.Errorf("rate limited count %d", met.Sum(metrics.RateLimited))
	}
}

func TestUserBoundSeesOnlyItsOwn(t *testing.T) {
	rt := newFake()
	s := New(rt, nil, Config{})
	ctx := context.Background()
	alice := &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeChat, Method: "jwt", User: "alice", UserBound: true}
	bob := &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeChat, Method: "jwt", User: "bob", UserBound: true}
	admin := &moltbot.Principal{Tenant: "a", Space: "a", Scope: moltbot.ScopeAdmin, Method: "jwt", User: "root"}
	c, err := s.Create(ctx, alice, moltbot.NewConversation{ID: "mine"})
	if err != nil || c.User != "alice" {
		t.Fatalf("create: %+v %v", c, err)
	}
	if _, err := s.Get(ctx, alice, "mine"); err != nil {
		t.Errorf("owner get: %v", err)
	}
	if _, err := s.Get(ctx, bob, "mine"); code(err) != moltbot.ENotFound {
		t.Errorf("other user get: %v", err)
	}
	if _, err := s.Turn(ctx, bob, TurnRequest{Conversation: "mine", Input: moltbot.TurnInput{Content: "x"}}); code(err) != moltbot.ENotFound {
		t.Errorf("other user turn: %v", err)
	}
	if err := s.Delete(ctx, bob, "mine"); code(err) != moltbot.ENotFound {
		t.Errorf("other user delete: %v", err)
	}
	if rt.turns != 0 {
		t.Errorf("another user's turn ran: %d", rt.turns)
	}
	if _, err := s.Get(ctx, admin, "mine"); err != nil {
		t.Errorf("tenant admin get: %v", err)
	}
	if _, err := s.Turn(ctx, alice, TurnRequest{Conversation: "mine", Input: moltbot.TurnInput{Content: "x"}}); err != nil {
		t.Errorf("owner turn: %v", err)
	}
	if err := s.Delete(ctx, alice, "mine"); err != nil {
		t.Errorf("owner delete: %v", err)
	}
}

func TestStreamChargesAndEnds(t *testing.T) {
	rt, pol := newFake(), &fakePolicy{calls: -1}
	s := New(rt, pol, Config{})
	ctx, p := context.Background(), tenantA()
	rt.Create(ctx, "a", moltbot.NewConversation{ID: "c"})
	st, err := s.Turn(ctx, p, TurnRequest{Conversation: "c", Stream: true, Input: moltbot.TurnInput{Content: "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var last moltbot.Event
	for ev := range st.Events() {
		if ev.Kind == moltbot.EventToken {
			text.WriteString(ev.Text)
		}
		last = ev
	}
	st.Close()
	if last.Kind != moltbot.EventDone || text.String() != "t0 t1 t2 " || last.Result.Completion.Content != text.String() {
		t.Fatalf("stream: %q, last %+v", text.String(), last)
	}
	if pol.charged != 5 {
		t.Errorf("charged %d tokens, want 5", pol.charged)
	}
}

// A reply the output cache served asked no model: its tokens are not
// charged to the tenant's budget (the call still counts against the rate).
func TestCacheHitNotCharged(t *testing.T) {
	rt, pol := newFake(), &fakePolicy{calls: -1}
	s := New(rt, pol, Config{})
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}
	for _, c := range []struct {
		cache string
		want  int
	}{{moltbot.CacheMiss, 5}, {moltbot.CacheHit, 5}, {"", 10}} {
		rt.cache = c.cache
		st, err := s.Complete(context.Background(), tenantA(), CompletionRequest{Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		if pol.charged != c.want {
			t.Fatalf("after a %q reply: charged %d, want %d", c.cache, pol.charged, c.want)
		}
	}
}

func TestSlowClientCancelsTheTurn(t *testing.T) {
	rt := newFake()
	rt.tokens = 50
	met := metrics.New("test")
	s := New(rt, nil, Config{EventBuffer: 4, Metrics: met})
	st, err := s.Complete(context.Background(), tenantA(), CompletionRequest{Stream: true,
		Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads until the runtime has been refused a token.
	if err := <-rt.canceled; code(err) != moltbot.ESlowClient {
		t.Fatalf("the runtime was told %v", err)
	}
	var n int
	var last moltbot.Event
	for ev := range st.Events() {
		n++
		last = ev
	}
	st.Close()
	if n != 5 || last.Kind != moltbot.EventError || code(last.Err) != moltbot.ESlowClient {
		t.Fatalf("%d events, last %+v", n, last)
	}
	if met.Sum(metrics.ChatSlowClients) != 1 {
		t.Errorf("slow clients counted %d", met.Sum(metrics.ChatSlowClients))
	}
}

func TestCloseCancelsAndReturns(t *testing.T) {
	rt := newFake()
	block := make(chan struct{})
	s := New(rt, nil, Config{})
	// A runtime that streams one token, then waits for its context.
	st, err := s.run(context.Background(), tenantA(), true, func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
		fn(moltbot.Chunk{Content: "a"})
		close(block)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	<-block
	if ev, _ := st.Next(); ev.Kind != moltbot.EventToken {
		t.Fatalf("first event %+v", ev)
	}
	st.Close() // the edge's client left: must cancel the turn and return
	st.Close()
}

func TestValidation(t *testing.T) {
	s := New(newFake(), nil, Config{MaxMessageBytes: 8, MaxMessages: 2})
	ctx, p := context.Background(), tenantA()
	temp := 3.0
	cases := []struct {
		name, code, param string
		err               func() error
	}{
		{"no messages", moltbot.EInvalid, "messages", func() error {
			_, err := s.Complete(ctx, p, CompletionRequest{})
			return err
		}},
		{"too many messages", moltbot.ETooLarge, "messages", func() error {
			m := moltbot.Message{Role: moltbot.RoleUser, Content: "x"}
			_, err := s.Complete(ctx, p, CompletionRequest{Messages: []moltbot.Message{m, m, m}})
			return err
		}},
		{"bad role", moltbot.EInvalid, "messages[0].role", func() error {
			_, err := s.Complete(ctx, p, CompletionRequest{Messages: []moltbot.Message{{Role: "robot", Content: "x"}}})
			return err
		}},
		{"long content", moltbot.ETooLarge, "content", func() error {
			_, err := s.Turn(ctx, p, TurnRequest{Conversation: "c", Input: moltbot.TurnInput{Content: "123456789"}})
			return err
		}},
		{"long system", moltbot.ETooLarge, "system", func() error {
			_, err := s.Create(ctx, p, moltbot.NewConversation{System: "123456789"})
			return err
		}},
		{"temperature", moltbot.EInvalid, "temperature", func() error {
			_, err := s.Turn(ctx, p, TurnRequest{Conversation: "c", Input: moltbot.TurnInput{Content: "x", Options: moltbot.ChatOptions{Temperature: &temp}}})
			return err
		}},
		{"external id with a space", moltbot.EInvalid, "external_id", func() error {
			_, err := s.Turn(ctx, p, TurnRequest{Conversation: "c", Input: moltbot.TurnInput{Content: "x", ExternalID: "a b"}})
			return err
		}},
		{"long external id", moltbot.EInvalid, "external_id", func() error {
			_, err := s.Turn(ctx, p, TurnRequest{Conversation: "c", Input: moltbot.TurnInput{Content: "x", ExternalID: strings.Repeat("x", 129)}})
			return err
		}},
		{"unknown model", moltbot.ENotFound, "model", func() error {
			_, err := s.Complete(ctx, p, CompletionRequest{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}, Options: moltbot.ChatOptions{Model: "q/x"}})
			return err
		}},
	}
	for _, tc := range cases {
		err := tc.err()
		var me *moltbot.Error
		if !errors.As(err, &me) || me.Code != tc.code || me.Param != tc.param {
			t.Errorf("%s: %v (want %s on %s)", tc.name, err, tc.code, tc.param)
		}
	}
}

// fakeQuota admits creates while the space holds fewer than max
// conversations (in the fake runtime) and turns unless full.
type fakeQuota struct {
	rt       *fakeRuntime
	max      int
	full     bool
	released int
}

func (q *fakeQuota) AdmitCreate(p *moltbot.Principal) (func(), error) {
	q.rt.mu.Lock()
	n := len(q.rt.convs)
	q.rt.mu.Unlock()
	if n >= q.max {
		return nil, moltbot.Errorf(moltbot.EQuota, "tenant %q has %d conversations and may keep %d (limits.max_conversations)", p.Tenant, n, q.max)
	}
	return func() { q.released++ }, nil
}

func (q *fakeQuota) AdmitTurn(p *moltbot.Principal) error {
	if q.full {
		return moltbot.Errorf(moltbot.EQuota, "tenant %q stores too much (limits.max_stored_bytes)", p.Tenant)
	}
	return nil
}

// A call refused at a quota changes nothing: no conversation, no model
// call, no rate-limit token spent.
func TestQuotaRefusesBeforeAnything(t *testing.T) {
	rt, pol := newFake(), &fakePolicy{calls: 10}
	q := &fakeQuota{rt: rt, max: 1}
	s := New(rt, pol, Config{Quota: q})
	ctx, p := context.Background(), tenantA()
	if _, err := s.Create(ctx, p, moltbot.NewConversation{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if q.released != 1 {
		t.Fatalf("released %d times", q.released)
	}
	_, err := s.Create(ctx, p, moltbot.NewConversation{ID: "c2"})
	if code(err) != moltbot.EQuota || !strings.Contains(err.Error(), "limits.max_conversations") {
		t.Fatalf("create past the quota: %v", err)
	}
	if _, err := rt.Get(ctx, "a", "c2"); err == nil {
		t.Fatal("a refused create stored a conversation")
	}
	q.full = true
	if _, err := s.Turn(ctx, p, TurnRequest{Conversation: "c1", Input: moltbot.TurnInput{Content: "hi"}}); code(err) != moltbot.EQuota {
		t.Fatalf("turn past the byte quota: %v", err)
	}
	if rt.turns != 0 || pol.calls != 9 {
		t.Fatalf("a refused call did something: %d turns, %d calls left", rt.turns, pol.calls)
	}
	// A create the rate limit refuses gives its reservation back.
	q.full, q.max, pol.calls = false, 5, 0
	if _, err := s.Create(ctx, p, moltbot.NewConversation{ID: "c3"}); code(err) != moltbot.ERateLimited || q.released != 2 {
		t.Fatalf("%v, released %d", err, q.released)
	}
}

// A turn whose model sends its tokens in one burst does not keep the
// first one from the edge until the last: the first push yields to the
// reader it woke. On one processor the reader has the first token before
// the turn pushed its second (without the yield, after all 64).
func TestFirstTokenNotHeldBehindABurst(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := New(newFake(), nil, Config{EventBuffer: 128})
	var pushed atomic.Int32
	// On one processor the turn's goroutine starts once the reader below
	// waits in Next, as an edge does.
	st, err := s.run(context.Background(), tenantA(), true, func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
		for range 64 {
			fn(moltbot.Chunk{Content: "a"})
			pushed.Add(1)
		}
		return &moltbot.TurnResult{Completion: &moltbot.Completion{Content: "done"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int32, 1)
	if ev, _ := st.Next(); ev.Kind != moltbot.EventToken {
		t.Fatalf("first event %+v", ev)
	}
	got <- pushed.Load()
	for {
		if _, ok := st.Next(); !ok {
			break
		}
	}
	if n := <-got; n > 1 {
		t.Fatalf("the reader got the first token after %d of 64 pushes", n)
	}
}
