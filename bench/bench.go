package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot/inference/sse"
)

// Mode is how load is offered.
type Mode string

// Modes.
const (
	// Closed keeps Concurrency requests in flight: a slow server slows the load.
	Closed Mode = "closed"
	// Open sends at Rate whatever the server does; latency counts from the
	// scheduled send time, so queueing in the server cannot hide
	// (no coordinated omission).
	Open Mode = "open"
)

// Config describes one load test. Zero values take the defaults noted.
type Config struct {
	// URL is the node's base URL (default http://127.0.0.1:3000); several,
	// comma-separated, spread requests round-robin over a cluster's nodes.
	URL         string
	Mode        Mode          // default closed
	Concurrency int           // closed loop, default 16
	Rate        float64       // open loop, requests per second (default 200)
	Duration    time.Duration // run this long (default 30s) ...
	Requests    int           // ... or this many requests (wins when set)
	// Conversations > 0 runs the stateful scenario: this many conversations
	// of Turns turns each, through the conversations API.
	Conversations int
	Turns         int
	Stream        bool
	PromptTokens  int // approximate tokens of each prompt (default 64)
	MaxTokens     int // max_tokens sent (0: not sent)
	Model         string
	Headers       http.Header
	Timeout       time.Duration // per request (default 60s)
	SLOTTFT       time.Duration // goodput: TTFT at most this (streams)
	SLOE2E        time.Duration // goodput: end-to-end at most this
	// Progress receives progress on stderr-like output; nil: none.
	Progress io.Writer
	// Terminal draws a progress bar with \r; otherwise a line every 5 s.
	Terminal bool
	Client   *http.Client
	// TLS configures https:// URLs (trusted CAs) when Client is nil.
	TLS *tls.Config

	urls []string
}

func (c *Config) defaults() error {
	if c.URL == "" {
		c.URL = "http://127.0.0.1:3000"
	}
	var urls []string
	for _, u := range strings.Split(c.URL, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return fmt.Errorf("bench: no URL")
	}
	c.urls = urls
	c.URL = strings.Join(urls, ",")
	if c.Mode == "" {
		c.Mode = Closed
	}
	if c.Mode != Closed && c.Mode != Open {
		return fmt.Errorf("bench: mode must be closed or open, got %q", c.Mode)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.Duration <= 0 && c.Requests <= 0 && c.Conversations <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Conversations > 0 && c.Turns <= 0 {
		c.Turns = 1
	}
	if c.PromptTokens <= 0 {
		c.PromptTokens = 64
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.Client == nil {
		conns := c.Concurrency * 2
		if c.Mode == Open {
			conns = 4096
		}
		c.Client = &http.Client{Transport: &http.Transport{
			MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 90 * time.Second,
			DisableCompression: true, ForceAttemptHTTP2: false, TLSClientConfig: c.TLS,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		}}
	}
	return nil
}

// Error classes.
const (
	ClassOK         = ""
	Class4xx        = "4xx"
	Class429        = "429"
	Class5xx        = "5xx"
	ClassTimeout    = "timeout"
	ClassConnection = "connection"
	ClassStream     = "stream" // an error event inside a 200 stream
)

// result is one request's measurements.
type result struct {
	start     time.Duration // scheduled (open) or actual (closed) start, since the run began
	e2e       time.Duration
	ttft      time.Duration // streams: to the first content token
	tokens    int           // output tokens (usage when given, else content chunks)
	class     string
	provider  string
	failovers int
}

// worker state: each goroutine appends to its own slices (no contention).
type shard struct {
	results []result
	itl     []float32 // ms between consecutive tokens
}

// Prompt returns filler text of about n tokens.
func Prompt(n int) string {
	words := []string{"please", "summarize", "the", "following", "notes", "about", "edge", "devices", "and", "their", "memory"}
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[i%len(words)])
	}
	return b.String()
}

type runner struct {
	cfg       Config
	created   atomic.Int64
	begin     time.Time
	done      atomic.Int64
	errs      atomic.Int64
	body      []byte   // stateless request body
	convIDs   []string // stateful
	turnBody  [][]byte // stateful, per turn index
	convLocks []sync.Mutex
	convTurn  []int
}

// Run executes the load test and returns its report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg}
	prompt := Prompt(cfg.PromptTokens)
	if cfg.Conversations > 0 {
		if err := r.setupConversations(ctx, prompt); err != nil {
			return nil, err
		}
	} else {
		req := map[string]any{"messages": []map[string]string{{"role": "user", "content": prompt}}, "stream": cfg.Stream}
		if cfg.Stream {
			req["stream_options"] = map[string]bool{"include_usage": true}
		}
		if cfg.Model != "" {
			req["model"] = cfg.Model
		}
		if cfg.MaxTokens > 0 {
			req["max_tokens"] = cfg.MaxTokens
		}
		r.body, _ = json.Marshal(req)
	}
	total := cfg.Requests
	if cfg.Conversations > 0 {
		total = cfg.Conversations * cfg.Turns
	}
	cpu0 := cpuTime()
	r.begin = time.Now()
	stopProgress := r.progress(total)
	var shards []*shard
	var err error
	if cfg.Mode == Open {
		shards, err = r.open(ctx, total)
	} else {
		shards, err = r.closed(ctx, total)
	}
	elapsed := time.Since(r.begin)
	stopProgress()
	cpu := cpuTime() - cpu0
	if err != nil {
		return nil, err
	}
	return buildReport(&cfg, shards, elapsed, cpu), nil
}

func (r *runner) setupConversations(ctx context.Context, prompt string) error {
	cfg := r.cfg
	r.convIDs = make([]string, cfg.Conversations)
	r.convLocks = make([]sync.Mutex, cfg.Conversations)
	r.convTurn = make([]int, cfg.Conversations)
	for t := 0; t < cfg.Turns; t++ {
		req := map[string]any{"content": fmt.Sprintf("turn %d: %s", t+1, prompt), "stream": cfg.Stream}
		if cfg.MaxTokens > 0 {
			req["max_tokens"] = cfg.MaxTokens
		}
		b, _ := json.Marshal(req)
		r.turnBody = append(r.turnBody, b)
	}
	create := []byte(`{}`)
	if cfg.Model != "" {
		create, _ = json.Marshal(map[string]string{"model": cfg.Model})
	}
	// Create them in parallel: setup is not measured.
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < min(32, cfg.Conversations); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Conversations {
					return
				}
				id, err := r.createConversation(ctx, create)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				r.convIDs[i] = id
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("bench: create conversations: %w", first)
	}
	return nil
}

func (r *runner) createConversation(ctx context.Context, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.urls[int(r.created.Add(1))%len(r.cfg.urls)]+"/v1/conversations", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	r.headers(req)
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var c struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return "", err
	}
	return c.ID, nil
}

func (r *runner) headers(req *http.Request) {
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range r.cfg.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
}

// request returns the URL and body of the i-th request. For conversations,
// the i-th request is a turn of conversation i % N; turns of one
// conversation are serialised by lock (a conversation runs one turn at a time).
func (r *runner) request(i int) (url string, body []byte, conv int) {
	base := r.cfg.urls[i%len(r.cfg.urls)]
	if r.convIDs == nil {
		return base + "/v1/chat/completions", r.body, -1
	}
	c := i % len(r.convIDs)
	// Turn t of a conversation goes to node (c + t) % nodes: every node sees
	// every conversation, and most turns are forwarded to the owner.
	base = r.cfg.urls[(c+i/len(r.convIDs))%len(r.cfg.urls)]
	return base + "/v1/conversations/" + r.convIDs[c] + "/messages", nil, c
}

func (r *runner) over(i, total int) bool {
	if total > 0 {
		return i >= total
	}
	return time.Since(r.begin) >= r.cfg.Duration
}

func (r *runner) closed(ctx context.Context, total int) ([]*shard, error) {
	shards := make([]*shard, r.cfg.Concurrency)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range shards {
		sh := &shard{results: make([]result, 0, 1024)}
		shards[w] = sh
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := sse.NewReader(nil, 0)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if r.over(i, total) {
					return
				}
				r.do(ctx, i, time.Since(r.begin), sh, br)
			}
		}()
	}
	wg.Wait()
	return shards, nil
}

// open sends request i at begin + i/rate, each on its own goroutine, so a
// slow server never delays the next send.
func (r *runner) open(ctx context.Context, total int) ([]*shard, error) {
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	// Results go to 64 locked shards: little contention, nothing lost.
	const n = 64
	shards := make([]*shard, n)
	locks := make([]sync.Mutex, n)
	for i := range shards {
		shards[i] = &shard{results: make([]result, 0, 256)}
	}
	readers := sync.Pool{New: func() any { return sse.NewReader(nil, 0) }}
	var wg sync.WaitGroup
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		due := time.Duration(i) * interval
		if total > 0 && i >= total || total <= 0 && due >= r.cfg.Duration {
			break
		}
		if wait := due - time.Since(r.begin); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := readers.Get().(*sse.Reader)
			local := shard{results: make([]result, 0, 1)}
			r.do(ctx, i, due, &local, br)
			br.Reset(nil)
			readers.Put(br)
			k := i % n
			locks[k].Lock()
			shards[k].results = append(shards[k].results, local.results...)
			shards[k].itl = append(shards[k].itl, local.itl...)
			locks[k].Unlock()
		}()
	}
	wg.Wait()
	return shards, nil
}

// do sends request i, which was due at `due` (since begin), and records it.
func (r *runner) do(ctx context.Context, i int, due time.Duration, sh *shard, br *sse.Reader) {
	url, body, conv := r.request(i)
	if conv >= 0 {
		// One turn at a time per conversation; waiting counts as latency.
		r.convLocks[conv].Lock()
		t := r.convTurn[conv]
		r.convTurn[conv]++
		body = r.turnBody[t%len(r.turnBody)]
		defer r.convLocks[conv].Unlock()
	}
	res := result{start: due}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, url, bytes.NewReader(body))
	r.headers(req)
	scheduled := r.begin.Add(due)
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		res.class = classify(err)
		res.e2e = time.Since(scheduled)
		r.record(sh, res)
		return
	}
	res.provider = resp.Header.Get("X-Moltbot-Provider")
	res.failovers, _ = strconv.Atoi(resp.Header.Get("X-Moltbot-Failovers"))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		res.class = Class429
	case resp.StatusCode == http.StatusGatewayTimeout:
		res.class = ClassTimeout
	case resp.StatusCode >= 500:
		res.class = Class5xx
	case resp.StatusCode >= 400:
		res.class = Class4xx
	}
	if res.class != ClassOK {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res.e2e = time.Since(scheduled)
		r.record(sh, res)
		return
	}
	if r.cfg.Stream {
		if br == nil {
			br = sse.NewReader(resp.Body, 0)
		} else {
			br.Reset(resp.Body)
		}
		r.readStream(br, scheduled, &res, sh)
	} else {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			res.class = classify(err)
		} else {
			res.tokens = completionTokens(b)
		}
	}
	resp.Body.Close()
	res.e2e = time.Since(scheduled)
	r.record(sh, res)
}

var (
	doneMarker   = []byte("[DONE]")
	contentKey   = []byte(`"content":"`)
	emptyContent = []byte(`"content":""`)
	usageKey     = []byte(`"usage":`)
	errorKey     = []byte(`"error":`)
)

// readStream reads SSE chunks (inference/sse, the providers' fuzzed
// reader), timing each content token. A stream that ends cleanly after
// some chunks without [DONE] counts as served; one that ends before any,
// or with an event past the reader's bound, is a stream error.
func (r *runner) readStream(br *sse.Reader, scheduled time.Time, res *result, sh *shard) {
	var last time.Time
	chunks := 0
	usage := -1
	for {
		ev, err := br.Next()
		if err != nil {
			if chunks == 0 || !errors.Is(err, io.EOF) {
				res.class = classify(err)
				if errors.Is(err, io.EOF) || errors.Is(err, sse.ErrTooLong) {
					res.class = ClassStream
				}
			}
			break
		}
		data := bytes.TrimSpace(ev.Data)
		if bytes.Equal(data, doneMarker) {
			break
		}
		if bytes.Contains(data, errorKey) && !bytes.Contains(data, contentKey) {
			res.class = ClassStream
			break
		}
		if bytes.Contains(data, contentKey) && !bytes.Contains(data, emptyContent) {
			now := time.Now()
			if chunks == 0 {
				res.ttft = now.Sub(scheduled)
			} else {
				sh.itl = append(sh.itl, float32(now.Sub(last))/float32(time.Millisecond))
			}
			last = now
			chunks++
		} else if bytes.Contains(data, usageKey) {
			usage = completionTokens(data)
		}
	}
	res.tokens = chunks
	if usage > 0 {
		res.tokens = usage
	}
}

func completionTokens(b []byte) int {
	var u struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	json.Unmarshal(b, &u)
	return u.Usage.CompletionTokens
}

func (r *runner) record(sh *shard, res result) {
	sh.results = append(sh.results, res)
	r.done.Add(1)
	if res.class != ClassOK {
		r.errs.Add(1)
	}
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return ClassStream
	}
	return ClassConnection
}

// progress reports while the run goes; the returned func stops it.
func (r *runner) progress(total int) func() {
	w := r.cfg.Progress
	if w == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	every := 5 * time.Second
	if r.cfg.Terminal {
		every = 200 * time.Millisecond
	}
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		var lastN int64
		lastT := time.Now()
		for {
			select {
			case <-stop:
				if r.cfg.Terminal {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case now := <-t.C:
				n := r.done.Load()
				rps := float64(n-lastN) / now.Sub(lastT).Seconds()
				lastN, lastT = n, now
				el := time.Since(r.begin)
				frac := 0.0
				if total > 0 {
					frac = float64(n) / float64(total)
				} else if r.cfg.Duration > 0 {
					frac = float64(el) / float64(r.cfg.Duration)
				}
				frac = min(frac, 1)
				line := fmt.Sprintf("%6.1fs  %8d requests  %8.0f req/s  %d errors", el.Seconds(), n, rps, r.errs.Load())
				if r.cfg.Terminal {
					const width = 30
					bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
					fmt.Fprintf(w, "\r\033[K[%s] %3.0f%% %s", bar, frac*100, line)
				} else {
					fmt.Fprintln(w, line)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// IsTerminal reports whether f is a terminal (for the progress bar).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
