package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Many callers over a few pooled connections, some canceling mid-body or
// closing early: every reply read whole is its own request's (no
// connection is shared or handed back while in use), a canceled read
// says context.Canceled, and no idle connection is left holding a
// deadline or a body's rest (the last round, all read whole, still works
// on whatever the pool kept). Run with -race.
func TestConcurrentCallers(t *testing.T) {
	// (Not newServer: its channel of closed connections fills up here.)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Id")
		b, _ := io.ReadAll(r.Body)
		for i := range 8 {
			fmt.Fprintf(w, "data: %s %s %d\n\n", id, b, i)
			w.(http.Flusher).Flush()
		}
	}))
	defer s.Close()
	tr, _ := newTransport()
	tr.MaxIdlePerHost = 3
	c := &http.Client{Transport: tr}
	want := func(id string) string {
		var sb strings.Builder
		for i := range 8 {
			fmt.Fprintf(&sb, "data: %s body-%s %d\n\n", id, id, i)
		}
		return sb.String()
	}
	round := func(g, n int, mixed bool) {
		var wg sync.WaitGroup
		for w := range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					id := fmt.Sprintf("%d-%d", w, i)
					ctx, cancel := context.WithCancel(context.Background())
					req, _ := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader("body-"+id))
					req.Header.Set("X-Id", id)
					resp, err := c.Do(req)
					if err != nil {
						t.Errorf("%s: %v", id, err)
						cancel()
						return
					}
					switch k := i % 3; {
					case mixed && k == 1: // canceled after the first event
						buf := make([]byte, 16)
						resp.Body.Read(buf)
						cancel()
						if _, err := io.ReadAll(resp.Body); err != nil && !errors.Is(err, context.Canceled) {
							t.Errorf("%s: after cancel: %v", id, err)
						}
					case mixed && k == 2: // closed after a few bytes
						buf := make([]byte, 5)
						resp.Body.Read(buf)
					default:
						b, err := io.ReadAll(resp.Body)
						if err != nil || string(b) != want(id) {
							t.Errorf("%s: %q, %v", id, b, err)
						}
					}
					resp.Body.Close()
					cancel()
				}
			}()
		}
		wg.Wait()
	}
	round(6, 40, true)
	round(6, 10, false)
	tr.mu.Lock()
	idle := 0
	for _, l := range tr.idle {
		idle += len(l)
	}
	tr.mu.Unlock()
	if idle > 3 {
		t.Fatalf("%d idle connections (MaxIdlePerHost 3)", idle)
	}
	tr.CloseIdleConnections()
}
