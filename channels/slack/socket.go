package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// maxFrame caps a Socket Mode frame (an envelope is a few KB; a message's
// text is at most 40,000 characters).
const maxFrame = channels.MaxBody

// quickReconnects is how many disconnect frames in a row are answered by
// reconnecting at once; more (Slack disconnecting us again and again
// without an event between) wait a backoff.
const quickReconnects = 3

// frame is a Socket Mode message from Slack: hello, disconnect, or an
// envelope (events_api, slash_commands, interactive).
type frame struct {
	Type         string          `json:"type"`
	EnvelopeID   string          `json:"envelope_id"`
	Payload      json.RawMessage `json:"payload"`
	Reason       string          `json:"reason"`
	RetryAttempt int             `json:"retry_attempt"`
}

// disconnected is a session Slack ended with a disconnect frame.
type disconnected struct{ reason string }

func (d *disconnected) Error() string { return "slack: disconnect: " + d.reason }

// session is what one connection saw.
type session struct {
	hello     bool // Slack said hello: the connection was up
	envelopes int  // envelopes read
}

// runSocket keeps one Socket Mode connection: connect, read until it
// ends, reconnect (at once after a disconnect frame, else after a
// jittered backoff), until ctx ends or an error is fatal.
func (a *Adapter) runSocket(ctx context.Context) error {
	log := a.host.Log()
	attempt, quick := 0, 0
	for {
		a.host.Report(channels.StateConnecting, nil)
		s, err := a.connect(ctx)
		if ctx.Err() != nil {
			a.host.Report(channels.StateStopped, nil)
			return nil
		}
		if channels.IsFatal(err) {
			log.Error("slack: stopped", "err", channels.RedactError(err))
			a.host.Report(channels.StateFatal, err)
			return err
		}
		if s.hello {
			attempt = 0
		}
		if s.envelopes > 0 {
			quick = 0
		}
		var d *disconnected
		if errors.As(err, &d) && quick < quickReconnects {
			quick++
			log.Info("slack: reconnecting", "reason", d.reason)
			continue
		}
		wait := channels.Backoff(attempt, a.backoffBase, a.backoffMax)
		attempt++
		var rl *rateLimited
		if errors.As(err, &rl) && rl.After > wait {
			wait = rl.After // apps.connections.open or auth.test said when
		}
		log.Warn("slack: connection lost", "err", channels.RedactError(err), "retry_in", wait)
		a.host.Report(channels.StateBackoff, err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			a.host.Report(channels.StateStopped, nil)
			return nil
		}
	}
}

// connect runs one connection: auth.test (until it has answered once),
// apps.connections.open, the dial, then reads until the socket ends. It
// returns once every envelope it started is handled.
func (a *Adapter) connect(ctx context.Context) (session, error) {
	var s session
	if a.selfID() == "" {
		if err := a.authTest(ctx); err != nil {
			return s, err
		}
	}
	u, err := a.connectionsOpen(ctx)
	if err != nil {
		return s, err
	}
	conn, resp, err := a.dialer.DialContext(ctx, u, nil)
	if err != nil {
		// The URL carries a ticket: not in the error.
		if resp != nil {
			return s, fmt.Errorf("slack: socket: dial: HTTP %d", resp.StatusCode)
		}
		var ne net.Error
		if errors.As(err, &ne) {
			return s, fmt.Errorf("slack: socket: dial: %s", channels.Redact(ne.Error()))
		}
		return s, fmt.Errorf("slack: socket: dial: %s", channels.RedactError(err))
	}
	conn.SetReadLimit(maxFrame)

	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		conn.Close()
		wg.Wait()
	}()
	stop := context.AfterFunc(cctx, func() { conn.Close() })
	defer stop()

	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return conn.WriteMessage(websocket.TextMessage, b)
	}
	// The watchdog: any frame, ping or pong pushes the read deadline out;
	// our pings make a live peer answer, so only a dead path lets it pass.
	alive := func() { conn.SetReadDeadline(time.Now().Add(a.idleTimeout)) }
	alive()
	conn.SetPongHandler(func(string) error { alive(); return nil })
	conn.SetPingHandler(func(p string) error {
		alive()
		err := conn.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(5*time.Second))
		var ne net.Error
		if err == websocket.ErrCloseSent || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return err
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(a.pingEvery)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
				if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)) != nil {
					return
				}
			}
		}
	}()

	log := a.host.Log()
	sem := make(chan struct{}, a.inflight)
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return s, ctx.Err()
			}
			return s, fmt.Errorf("slack: socket: %w", err)
		}
		alive()
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			log.Debug("slack: a frame that is not JSON", "err", err)
			continue
		}
		switch f.Type {
		case "hello":
			s.hello = true
			a.host.Report(channels.StateConnected, nil)
			continue
		case "disconnect":
			return s, &disconnected{reason: f.Reason}
		}
		if f.EnvelopeID == "" {
			continue
		}
		s.envelopes++
		select {
		case sem <- struct{}{}:
		default:
			// Backpressure: Slack sends an envelope it got no ack for again.
			log.Warn("slack: busy: an envelope left unacknowledged", "type", f.Type, "inflight", a.inflight)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ack := a.envelope(ctx, &f)
			<-sem // free before the ack: Slack may send the next at once
			if ack == nil {
				return
			}
			if err := write(ack); err != nil {
				log.Debug("slack: ack not sent", "err", err)
			}
		}()
	}
}

// envelope handles one envelope and returns its ack (nil: none): an event becomes a
// Message that the Host accepts (durably queued, before any model runs),
// then the ack goes. Accepting first means a node that dies in between
// leaves the envelope unacknowledged and Slack sends it again (one turn:
// the Host deduplicates by Message.ID); acking first would lose it. An
// Accept slower than Slack's 3 s makes Slack retry, which the same
// deduplication absorbs.
func (a *Adapter) envelope(ctx context.Context, f *frame) []byte {
	if f.Type == "events_api" {
		var cb eventCallback
		if err := json.Unmarshal(f.Payload, &cb); err != nil {
			a.host.Log().Debug("slack: an events_api payload that does not parse", "err", err)
		} else if !a.accept(ctx, &cb) {
			return nil // ctx ended: no ack, Slack sends it again
		}
	}
	// Slash commands and interactions are not handled: acknowledged, so
	// Slack does not send them again.
	ack, _ := json.Marshal(struct {
		EnvelopeID string `json:"envelope_id"`
	}{f.EnvelopeID})
	return ack
}

// accept hands cb's message, if it makes one, to the Host. It returns
// false when the message was not taken and Slack should send it again
// (the delivery is left unacknowledged, or answered 503): ctx ended, or
// the Host is busy (moltbot.EBusy: its queue is full). A duplicate, or a
// message the Host refuses (a bot, an empty text, a loop's budget), is
// logged and acknowledged: sending it again cannot help.
func (a *Adapter) accept(ctx context.Context, cb *eventCallback) bool {
	m, why := message(cb, a.selfID())
	log := a.host.Log()
	if why != dropNone {
		log.Debug("slack: event dropped", "type", cb.Event.Type, "why", string(why))
		return true
	}
	m.Images = a.images(ctx, cb.Event.Files)
	err := a.host.Accept(ctx, m)
	switch {
	case err == nil, errors.Is(err, channels.ErrDuplicate):
		return true
	case ctx.Err() != nil:
		return false
	case moltbot.ErrorCode(err) == moltbot.EBusy:
		log.Warn("slack: the host is busy: left for Slack to send again", "id", m.ID, "err", err)
		return false
	default:
		log.Info("slack: message refused", "id", m.ID, "err", err)
		return true
	}
}
