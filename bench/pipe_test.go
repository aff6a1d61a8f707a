package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
)

// pipeServer serves h over in-memory connections (net.Pipe) and returns a
// client that reaches it whatever host its URL names, and that URL. Closed
// at the end of the test (idle connections, the server, its goroutines).
//
// It is for tests in a testing/synctest bubble: a real socket is never
// "durably blocked", so a bubble's fake clock could not advance while a
// client waits on one; a pipe is. Inside a bubble every handler's
// time.Sleep and every timer of the code under test run on the fake
// clock, so measured durations are exact and the test takes no real time.
// Call it inside the bubble (its goroutines must belong to it).
func pipeServer(t testing.TB, h http.Handler) (*http.Client, string) {
	t.Helper()
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: h}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l)
	}()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, s := net.Pipe()
			select {
			case l.conns <- s:
				return c, nil
			case <-l.done:
				return nil, net.ErrClosed
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		MaxIdleConnsPerHost: 4096, DisableCompression: true,
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-served
	})
	return &http.Client{Transport: tr}, "http://pipe.test"
}

// pipeListener hands the server ends of pipeServer's pipes to http.Server.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, errors.New("bench: pipe listener closed")
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe.test:80" }
