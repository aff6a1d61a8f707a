package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// fakeOpenAI speaks OpenAI's chat completions: an SSE stream of n chunks and
// [DONE], or one JSON body; done=false leaves [DONE] out.
func fakeOpenAI(t *testing.T, n int, done bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"completion_tokens":1}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d\"}}]}\n\n", i)
			f.Flush()
		}
		if done {
			fmt.Fprint(w, "data: [DONE]\n\n")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The floor's proxy passes both kinds of reply through whole, and timeOne
// reads them: a stream to its [DONE], a body to its end.
func TestReverseProxyAndTimeOne(t *testing.T) {
	up := fakeOpenAI(t, 16, true)
	u, _ := url.Parse(up.URL)
	rp := newReverseProxy(u)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	c := &http.Client{}
	br := bufio.NewReader(nil)
	for _, base := range []string{up.URL, proxy.URL} {
		tgt := newFloorTarget("t", base, "sim", http.Header{"Authorization": {"Bearer k"}})
		for _, stream := range []bool{false, true} {
			for i := 0; i < 20; i++ {
				tm, err := timeOne(context.Background(), c, tgt, stream, br)
				if err != nil {
					t.Fatalf("%s stream=%v: %v", base, stream, err)
				}
				if tm.first <= 0 || tm.total < tm.first {
					t.Fatalf("%s stream=%v: first %v, total %v", base, stream, tm.first, tm.total)
				}
			}
		}
	}
}

// A stream cut before [DONE] is an error, not a short sample.
func TestTimeOneWantsDone(t *testing.T) {
	up := fakeOpenAI(t, 4, false)
	_, err := timeOne(context.Background(), &http.Client{}, newFloorTarget("cut", up.URL, "sim", nil), true, bufio.NewReader(nil))
	if err == nil || !strings.Contains(err.Error(), "[DONE]") {
		t.Fatalf("err = %v, want a missing [DONE]", err)
	}
}

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want spread
	}{
		{nil, spread{}},
		{[]float64{3}, spread{3, 3, 3}},
		{[]float64{5, 1, 3}, spread{3, 1, 5}},
		{[]float64{4, 1, 3, 2}, spread{2.5, 1, 4}},
	} {
		in := append([]float64(nil), tc.in...)
		if got := spreadOf(tc.in); got != tc.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", in, got, tc.want)
		}
		for i := range in { // the caller's slice is left alone
			if in[i] != tc.in[i] {
				t.Fatalf("spreadOf sorted its argument: %v", tc.in)
			}
		}
	}
}
