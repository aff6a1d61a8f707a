package discord

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

const (
	// closeResume is the code the adapter closes with when it means to
	// resume (a zombie, op 7, a move to another node): any code but 1000
	// and 1001, which end the session.
	closeResume = 4900
	maxFrame    = 1 << 20
	// sendLimit sends a window of sendWindow (Discord closes at 120 a
	// minute with 4008).
	sendLimit  = 120
	sendWindow = time.Minute
	stateKey   = "session"
)

// session is what a RESUME needs; saved with the Host's Put.
type session struct {
	ID        string `json:"session_id"`
	ResumeURL string `json:"resume_gateway_url"`
	Seq       int64  `json:"seq"`
}

// dispatch is a MESSAGE_CREATE for the worker.
type dispatch struct {
	gen int
	seq int64
	d   json.RawMessage
}

// outcome says how a connection ended, for Run's next step.
type outcome struct {
	ready   bool // READY or RESUMED came: the backoff starts over
	now     bool // reconnect at once (op 7, a zombie)
	invalid bool // op 9: wait 1-5 s
}

var (
	errZombie    = errors.New("discord: no heartbeat ACK since the last heartbeat: a zombie connection, resuming")
	errReconnect = errors.New("discord: the gateway asked to reconnect (op 7)")
)

// Run keeps the Gateway connection until ctx ends.
func (a *Adapter) Run(ctx context.Context) error {
	if v, ok := a.host.Get(stateKey); ok {
		var s session
		if json.Unmarshal(v, &s) == nil && s.ID != "" {
			a.mu.Lock()
			a.sess, a.done = s, s.Seq
			a.mu.Unlock()
		}
	}
	q := make(chan dispatch, 256)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.work(wctx, q)
	}()
	defer func() {
		stop()
		wg.Wait()
		a.inflight.Wait()
		a.save(true)
	}()
	attempt := 0
	for {
		a.host.Report(channels.StateConnecting, nil)
		began := a.now()
		out, err := a.connect(ctx, q)
		if ctx.Err() != nil {
			a.host.Report(channels.StateStopped, nil)
			return nil
		}
		if channels.IsFatal(err) {
			a.host.Log().Error("discord: stopped", "err", channels.RedactError(err))
			a.host.Report(channels.StateFatal, err)
			return err
		}
		// A connection that got to READY (or RESUMED) and held for a
		// while starts the backoff over; one that keeps ending early (a
		// gateway sending op 7 at once, again and again) does not.
		if out.ready && a.now().Sub(began) >= a.stableAfter {
			attempt = 0
		}
		var wait time.Duration
		switch {
		case out.invalid:
			wait = a.invalidWait()
		case out.now && attempt == 0: // op 7, a zombie: resume at once
		default:
			wait = a.backoff(attempt)
		}
		attempt++
		a.host.Log().Info("discord: gateway connection ended", "err", channels.RedactError(err), "retry_in", wait)
		a.host.Report(channels.StateBackoff, err)
		if !sleep(ctx, wait) {
			a.host.Report(channels.StateStopped, nil)
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// gatewayBot is GET /gateway/bot's answer.
type gatewayBot struct {
	URL   string `json:"url"`
	Limit struct {
		Remaining  int   `json:"remaining"`
		ResetAfter int64 `json:"reset_after"` // milliseconds
	} `json:"session_start_limit"`
}

// identifyURL asks /gateway/bot where to connect, and before an IDENTIFY
// waits when no session start is left. A failed call falls back on the
// cached URL; a resume without its resume URL takes the cached one.
func (a *Adapter) identifyURL(ctx context.Context, resume bool) (string, error) {
	a.mu.Lock()
	cached := a.gateway
	a.mu.Unlock()
	if resume && cached != "" {
		return cached, nil // a RESUME spends no session start
	}
	_, data, err := a.rest.call(ctx, "GET", "/gateway/bot", "/gateway/bot", "", nil, true)
	if err != nil {
		if moltbot.ErrorCode(err) == moltbot.EUnauthorized {
			return "", channels.Fatal(fmt.Errorf("discord: the bot token was refused (GET /gateway/bot: 401): check option token: %w", err))
		}
		if cached != "" {
			return cached, nil
		}
		return "", err
	}
	var gb gatewayBot
	if err := json.Unmarshal(data, &gb); err != nil || gb.URL == "" {
		return "", errors.New("discord: GET /gateway/bot: no url in the answer")
	}
	if _, err := gatewayURL(gb.URL); err != nil {
		return "", err
	}
	a.mu.Lock()
	a.gateway = gb.URL
	a.mu.Unlock()
	if !resume && gb.Limit.Remaining == 0 && gb.Limit.ResetAfter > 0 {
		d := min(time.Duration(gb.Limit.ResetAfter)*time.Millisecond, 24*time.Hour)
		a.host.Log().Warn("discord: no session start left today: waiting for the reset", "wait", d)
		a.host.Report(channels.StateBackoff, fmt.Errorf("discord: session start limit reached, waiting %v", d))
		if !sleep(ctx, d) {
			return "", ctx.Err()
		}
	}
	return gb.URL, nil
}

// gatewayURL is u with the version and encoding (and never compress).
func gatewayURL(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "wss" && p.Scheme != "ws") || p.Host == "" {
		return "", fmt.Errorf("discord: gateway URL %q is not a ws(s) URL", u)
	}
	if p.Path == "" {
		p.Path = "/"
	}
	p.RawQuery = "v=10&encoding=json"
	return p.String(), nil
}

// conn is one Gateway connection.
type conn struct {
	ws      *websocket.Conn
	wmu     sync.Mutex // one writer at a time
	acked   atomic.Bool
	zombie  atomic.Bool
	closing atomic.Bool   // closeResume began: the reader keeps its deadline
	beat    chan struct{} // the server asked for a heartbeat (op 1)
	sent    []time.Time   // send times in the last window (at most sendLimit)
	now     func() time.Time
}

// send writes one payload, within the send limit.
func (c *conn) send(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if wait := c.reserve(); wait > 0 && !sleep(ctx, wait) {
		return ctx.Err()
	}
	c.ws.SetWriteDeadline(c.now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

// reserve takes a slot of the send window and says how long to wait for
// it (callers hold wmu).
func (c *conn) reserve() time.Duration {
	now := c.now()
	i := 0
	for i < len(c.sent) && now.Sub(c.sent[i]) >= sendWindow {
		i++
	}
	c.sent = c.sent[i:]
	var wait time.Duration
	if len(c.sent) >= sendLimit {
		wait = c.sent[0].Add(sendWindow).Sub(now)
		c.sent = c.sent[1:]
	}
	c.sent = append(c.sent, now.Add(wait))
	return wait
}

// closeResume starts the close handshake with a code that keeps the
// session resumable: the close frame now, then the reader has a second
// to read the server's close frame (closing the socket at once could
// reset it before the server reads ours; a zombie never answers, and the
// deadline ends the read).
func (c *conn) closeResume() {
	c.closing.Store(true)
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeResume, "resume"), time.Now().Add(time.Second))
	c.ws.SetReadDeadline(time.Now().Add(time.Second))
}

// drain reads (on the reader's goroutine) until the close handshake
// ends or its deadline passes.
func (c *conn) drain() {
	for {
		if _, _, err := c.ws.ReadMessage(); err != nil {
			return
		}
	}
}

// heartbeat beats every interval (the first after first) until ctx
// ends; a beat whose previous one had no ACK closes the connection as a
// zombie.
func (a *Adapter) heartbeat(ctx context.Context, c *conn, first, interval time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	c.acked.Store(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.beat:
			if a.beatOnce(ctx, c) != nil {
				c.ws.Close()
				return
			}
			continue
		case <-t.C:
		}
		if !c.acked.Swap(false) {
			c.zombie.Store(true)
			c.closeResume()
			return
		}
		if a.beatOnce(ctx, c) != nil {
			c.ws.Close()
			return
		}
		t.Reset(interval)
	}
}

func (a *Adapter) beatOnce(ctx context.Context, c *conn) error {
	a.mu.Lock()
	seq := a.sess.Seq
	a.mu.Unlock()
	var d any
	if seq > 0 {
		d = seq
	}
	return c.send(ctx, map[string]any{"op": opHeartbeat, "d": d})
}

// connect makes one connection and reads it until it ends.
func (a *Adapter) connect(ctx context.Context, q chan<- dispatch) (outcome, error) {
	var out outcome
	a.mu.Lock()
	sess := a.sess
	a.mu.Unlock()
	resume := sess.ID != ""
	target := sess.ResumeURL
	if !resume || target == "" {
		u, err := a.identifyURL(ctx, resume)
		if err != nil {
			return out, err
		}
		target = u
	}
	wsURL, err := gatewayURL(target)
	if err != nil {
		a.forget()
		return out, err
	}
	ws, resp, err := a.dialer.DialContext(ctx, wsURL, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resume {
			// The resume URL may be gone: the next attempt goes through
			// /gateway/bot and still resumes.
			a.mu.Lock()
			a.sess.ResumeURL = ""
			a.mu.Unlock()
		}
		return out, fmt.Errorf("discord: dial the gateway: %s", channels.RedactError(err))
	}
	ws.SetReadLimit(maxFrame)
	c := &conn{ws: ws, beat: make(chan struct{}, 1), now: a.now}
	cctx, cancel := context.WithCancel(ctx)
	var hb sync.WaitGroup
	defer func() {
		cancel()
		ws.Close() // a heartbeat stuck in a write returns at once
		hb.Wait()
	}()
	// A canceled Run closes the connection (for a resume elsewhere).
	stopped := context.AfterFunc(ctx, c.closeResume)
	defer stopped()

	ws.SetReadDeadline(a.now().Add(a.helloTimeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		return out, a.closed(err)
	}
	f, err := parseFrame(data)
	var hello struct {
		Interval int64 `json:"heartbeat_interval"`
	}
	if err != nil || f.Op != opHello || json.Unmarshal(f.D, &hello) != nil || hello.Interval <= 0 || hello.Interval > 600_000 {
		return out, errors.New("discord: the gateway's first frame is not a HELLO with a heartbeat interval")
	}
	interval := time.Duration(hello.Interval) * time.Millisecond
	hb.Add(1)
	go func() {
		defer hb.Done()
		a.heartbeat(cctx, c, time.Duration(float64(interval)*a.jitter()), interval)
	}()
	if resume {
		err = c.send(ctx, map[string]any{"op": opResume, "d": map[string]any{"token": a.opt.token, "session_id": sess.ID, "seq": sess.Seq}})
	} else {
		err = c.send(ctx, map[string]any{"op": opIdentify, "d": map[string]any{
			"token":      a.opt.token,
			"intents":    a.opt.intents,
			"properties": map[string]string{"os": "linux", "browser": "moltbot", "device": "moltbot"},
		}})
	}
	if err != nil {
		return out, fmt.Errorf("discord: send to the gateway: %w", err)
	}
	for {
		if !c.closing.Load() {
			ws.SetReadDeadline(a.now().Add(2*interval + a.helloTimeout))
			if c.closing.Load() { // closeResume ran in between: its deadline
				ws.SetReadDeadline(a.now().Add(time.Second))
			}
		}
		_, data, err := ws.ReadMessage()
		if err != nil {
			if c.zombie.Load() {
				return outcome{ready: out.ready, now: true}, errZombie
			}
			return out, a.closed(err)
		}
		f, err := parseFrame(data)
		if err != nil {
			a.host.Log().Debug("discord: a gateway frame skipped", "err", err)
			continue
		}
		switch f.Op {
		case opDispatch:
			if !a.onDispatch(ctx, f, q, &out) {
				return out, ctx.Err()
			}
		case opHeartbeat:
			select {
			case c.beat <- struct{}{}:
			default:
			}
		case opHeartbeatACK:
			c.acked.Store(true)
		case opReconnect:
			c.closeResume()
			c.drain()
			return outcome{ready: out.ready, now: true}, errReconnect
		case opInvalidSession:
			var resumable bool
			json.Unmarshal(f.D, &resumable)
			if !resumable {
				a.forget()
			}
			c.closeResume()
			c.drain()
			return outcome{ready: out.ready, invalid: true}, fmt.Errorf("discord: invalid session (op 9, resumable %v)", resumable)
		}
	}
}

// onDispatch handles an op 0; false when ctx ended.
func (a *Adapter) onDispatch(ctx context.Context, f frame, q chan<- dispatch, out *outcome) bool {
	a.mu.Lock()
	if f.S != nil && *f.S > a.sess.Seq {
		a.sess.Seq = *f.S
	}
	seq, gen := a.sess.Seq, a.gen
	a.mu.Unlock()
	switch f.T {
	case "READY":
		var r ready
		if json.Unmarshal(f.D, &r) != nil || r.SessionID == "" || !snowflake(r.User.ID) {
			a.host.Log().Warn("discord: a READY without a session or user id")
			return true
		}
		a.mu.Lock()
		a.gen++
		a.sess = session{ID: r.SessionID, ResumeURL: r.ResumeURL, Seq: seq}
		a.done = seq
		a.self = r.User.ID
		a.mu.Unlock()
		a.save(true)
		out.ready = true
		a.host.Log().Info("discord: connected", "user", r.User.ID, "name", r.User.Username)
		if app := cmp.Or(a.opt.appID, r.Application.ID); a.opt.command != "" && snowflake(app) {
			a.inflight.Add(1)
			go func() {
				defer a.inflight.Done()
				a.register(ctx, app)
			}()
		}
		a.host.Report(channels.StateConnected, nil)
	case "RESUMED":
		out.ready = true
		a.host.Log().Info("discord: resumed", "seq", seq)
		a.host.Report(channels.StateConnected, nil)
	case "INTERACTION_CREATE":
		// Off the reader and the worker (Discord wants the callback
		// within 3 s), at most 16 at once; more are left to fail.
		select {
		case a.interacting <- struct{}{}:
			a.inflight.Add(1)
			go func() {
				defer func() { <-a.interacting; a.inflight.Done() }()
				a.interactGateway(ctx, f.D)
			}()
		default:
			a.host.Log().Warn("discord: too many interactions at once: one dropped")
		}
	case "MESSAGE_CREATE":
		select {
		case q <- dispatch{gen: gen, seq: seq, d: f.D}:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// closed turns a read error into Run's error: the fatal close codes are
// Fatal; 4007 and 4009 end the session.
func (a *Adapter) closed(err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		// A resume would replay the same frame: start a new session.
		a.host.Log().Warn("discord: a gateway frame over 1 MiB: starting a new session (what was sent meanwhile is lost)")
		a.forget()
		return fmt.Errorf("discord: a gateway frame over %d bytes", maxFrame)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return fmt.Errorf("discord: gateway read: %s", channels.RedactError(err))
	}
	switch ce.Code {
	case 4004:
		return channels.Fatal(fmt.Errorf("discord: the gateway refused the token (close 4004): check option token"))
	case 4010, 4011, 4012:
		return channels.Fatal(fmt.Errorf("discord: the gateway closed with %d (%s): sharding or version this adapter does not do", ce.Code, ce.Text))
	case 4013:
		return channels.Fatal(fmt.Errorf("discord: the gateway closed with 4013: invalid intents (option intents)"))
	case 4014:
		return channels.Fatal(fmt.Errorf("discord: the gateway closed with 4014: a disallowed intent: turn on MESSAGE CONTENT INTENT in the Developer Portal (Bot page), or leave MESSAGE_CONTENT out of option intents"))
	case 4007, 4009:
		a.forget()
	}
	return fmt.Errorf("discord: the gateway closed with %d %s", ce.Code, ce.Text)
}

// forget drops the session: the next connection identifies.
func (a *Adapter) forget() {
	a.mu.Lock()
	a.sess = session{}
	a.gen++
	a.mu.Unlock()
	a.save(true)
}

// save puts the session, with the last dispatch the worker finished as
// its sequence number, in the Host's state (at most every persistEvery
// unless force).
func (a *Adapter) save(force bool) {
	a.mu.Lock()
	now := a.now()
	if !force && now.Sub(a.saved) < a.persistEvery {
		a.mu.Unlock()
		return
	}
	a.saved = now
	s := session{ID: a.sess.ID, ResumeURL: a.sess.ResumeURL, Seq: min(a.done, a.sess.Seq)}
	a.mu.Unlock()
	data, _ := json.Marshal(s)
	if err := a.host.Put(stateKey, data); err != nil {
		a.host.Log().Warn("discord: save the gateway session", "err", err)
	}
}

// register creates (or overwrites: Discord keys commands by name) the
// slash command option command names, with one string option text, once
// per application and definition: the Host's state remembers what was
// registered, so a restart or a move to another node does not spend
// Discord's 200 creations a day.
func (a *Adapter) register(ctx context.Context, app string) {
	cmd := map[string]any{
		"name": a.opt.command, "type": 1, "description": "Ask the bot",
		"options": []map[string]any{{"type": 3, "name": "text", "description": "Your message", "required": true}},
	}
	def, _ := json.Marshal(cmd)
	key := app + ":" + string(def)
	if v, ok := a.host.Get("command"); ok && string(v) == key {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, _, err := a.rest.call(ctx, "POST", "/applications/"+app+"/commands", "/applications/{app}/commands", app, cmd, true); err != nil {
		a.host.Log().Warn("discord: register the slash command", "command", a.opt.command, "err", err)
		return
	}
	if err := a.host.Put("command", []byte(key)); err != nil {
		a.host.Log().Warn("discord: remember the slash command", "err", err)
	}
	a.host.Log().Info("discord: slash command registered", "command", a.opt.command)
}
