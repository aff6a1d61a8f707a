package discord

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
)

// hostileGateway serves /api/v10/gateway/bot pointing at its own /ws,
// where serve runs on each connection.
func hostileGateway(t *testing.T, serve func(ws *websocket.Conn)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/api/v10/gateway/bot", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"url": "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws",
			"session_start_limit": map[string]int{"remaining": 1000}})
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		conns.Add(1)
		serve(ws)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &conns
}

func hostileAdapter(t *testing.T, srv *httptest.Server, h *channeltest.Host) *Adapter {
	t.Helper()
	a, err := newAdapter(channels.Config{Name: "dc", Options: map[string]string{"token": "t", "api_url": srv.URL + "/api/v10"}}, h)
	if err != nil {
		t.Fatal(err)
	}
	a.jitter = func() float64 { return 0.1 }
	a.backoff = func(n int) time.Duration { return channels.Backoff(n, time.Millisecond, 5*time.Millisecond) }
	a.helloTimeout = 50 * time.Millisecond
	return a
}

// A gateway that misbehaves costs a bounded wait and a reconnect with
// backoff, never a stuck Run or an unbounded read.
func TestHostileGateway(t *testing.T) {
	hello := func(ws *websocket.Conn, ms int) {
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":10,"d":{"heartbeat_interval":`+itoa(ms)+`}}`))
	}
	drainUntilClosed := func(ws *websocket.Conn) {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}
	for name, serve := range map[string]func(*websocket.Conn){
		"no HELLO":               drainUntilClosed,
		"HELLO without interval": func(ws *websocket.Conn) { hello(ws, 0); drainUntilClosed(ws) },
		"a dispatch first": func(ws *websocket.Conn) {
			ws.WriteMessage(websocket.TextMessage, []byte(`{"op":0,"s":1,"t":"READY","d":{}}`))
			drainUntilClosed(ws)
		},
		"a frame over 1 MiB": func(ws *websocket.Conn) {
			hello(ws, 1000)
			ws.WriteMessage(websocket.TextMessage, []byte(`{"op":0,"t":"X","d":"`+strings.Repeat("a", maxFrame)+`"}`))
			drainUntilClosed(ws)
		},
		"silence after HELLO": func(ws *websocket.Conn) { hello(ws, 20); drainUntilClosed(ws) }, // no ACK: zombie
	} {
		t.Run(name, func(t *testing.T) {
			srv, conns := hostileGateway(t, serve)
			h := &channeltest.Host{}
			run(t, hostileAdapter(t, srv, h))
			deadline := time.Now().Add(wait)
			for conns.Load() < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections: the adapter did not reconnect (states %v)", conns.Load(), h.States)
				}
				time.Sleep(time.Millisecond)
			}
			if h.State() == channels.StateConnected || h.State() == channels.StateFatal {
				t.Errorf("state %s", h.State())
			}
		})
	}
	// Frames that are not JSON are skipped: the connection stays and
	// heartbeats go on.
	beats := make(chan string, 16)
	srv, conns := hostileGateway(t, func(ws *websocket.Conn) {
		hello(ws, 30)
		ws.WriteMessage(websocket.TextMessage, []byte("garbage"))
		ws.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2})
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":0,"s":-5}`))
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if strings.Contains(string(data), `"op":1`) {
				ws.WriteMessage(websocket.TextMessage, []byte(`{"op":11}`))
				select {
				case beats <- string(data):
				default:
				}
			}
		}
	})
	run(t, hostileAdapter(t, srv, &channeltest.Host{}))
	for range 3 {
		select {
		case <-beats:
		case <-time.After(wait):
			t.Fatal("no heartbeats after junk frames")
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections: junk frames must not drop the connection", n)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// A gateway that answers every IDENTIFY or RESUME with READY and op 7 at once
// gets a growing backoff, not a reconnect loop at full speed.
func TestReconnectLoopBacksOff(t *testing.T) {
	srv, conns := hostileGateway(t, func(ws *websocket.Conn) {
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":10,"d":{"heartbeat_interval":1000}}`))
		ws.ReadMessage() // IDENTIFY or RESUME
		// No resume_gateway_url: the adapter resumes on the cached URL.
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"","user":{"id":"900"}}}`))
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":7,"d":null}`))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	h := &channeltest.Host{}
	a := hostileAdapter(t, srv, h)
	attempts := make(chan int, 64)
	a.backoff = func(n int) time.Duration {
		select {
		case attempts <- n:
		default:
		}
		return time.Millisecond
	}
	run(t, a)
	for want := 1; want <= 4; want++ {
		select {
		case n := <-attempts:
			if n != want {
				t.Fatalf("backoff attempt %d, want %d: the count must grow while connections end at once", n, want)
			}
		case <-time.After(wait):
			t.Fatalf("no backoff after %d connections", conns.Load())
		}
	}
}

// A frame over the limit would come again in a resume's replay: the
// adapter starts a new session (IDENTIFY) instead of resuming into it.
func TestOversizedFrameStartsANewSession(t *testing.T) {
	ops := make(chan int, 8)
	srv, _ := hostileGateway(t, func(ws *websocket.Conn) {
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":10,"d":{"heartbeat_interval":1000}}`))
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var f struct{ Op int }
		json.Unmarshal(data, &f)
		ops <- f.Op
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s1","resume_gateway_url":"","user":{"id":"900"}}}`))
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":0,"s":2,"t":"X","d":"`+strings.Repeat("a", maxFrame)+`"}`))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	run(t, hostileAdapter(t, srv, &channeltest.Host{}))
	for i, want := range []int{opIdentify, opIdentify} {
		select {
		case op := <-ops:
			if op != want {
				t.Fatalf("connection %d began with op %d, want %d (IDENTIFY)", i+1, op, want)
			}
		case <-time.After(wait):
			t.Fatal("no connection")
		}
	}
}
