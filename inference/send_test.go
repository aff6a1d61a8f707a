package inference

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Send answers as hc.Do does: a redirect is followed (the body sent
// again), an error is a *url.Error naming the method and the URL.
func TestSendAsClientDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/old":
			http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
		case "/new":
			w.Write(append([]byte("new:"), b...))
		}
	}))
	defer srv.Close()
	hc := NewHTTPClient(4)
	req, _ := http.NewRequest("POST", srv.URL+"/old", strings.NewReader(`{"a":1}`))
	resp, err := Send(hc, req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `new:{"a":1}` {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	req, _ = http.NewRequest("POST", "http://"+addr+"/v1/chat/completions", strings.NewReader("{}"))
	_, err = Send(hc, req)
	_, std := hc.Do(req)
	var ue, se *url.Error
	if !errors.As(err, &ue) || !errors.As(std, &se) || ue.Op != se.Op || ue.URL != se.URL || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Send: %v; hc.Do: %v", err, std)
	}
}
