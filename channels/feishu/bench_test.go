package feishu

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/feishu/fakefeishu"
)

type nopHost struct{}

func (nopHost) Accept(context.Context, channels.Message) error { return nil }
func (nopHost) Get(string) ([]byte, bool)                      { return nil, false }
func (nopHost) Put(string, []byte) error                       { return nil }
func (nopHost) Log() *slog.Logger                              { return slog.New(slog.DiscardHandler) }
func (nopHost) Report(string, error)                           {}

func benchEvents(b *testing.B, encrypted bool) {
	opts := map[string]string{"app_id": appID, "app_secret": appSecret, "verification_token": vtok}
	if encrypted {
		opts["encrypt_key"] = ekey
	}
	ad, err := New(channels.Config{Name: "fs", Type: "feishu", Options: opts}, nopHost{})
	if err != nil {
		b.Fatal(err)
	}
	a := ad.(*Adapter)
	// Distinct event ids (the adapter drops a repeated one early).
	const n = 1024
	bodies := make([][]byte, n)
	headers := make([]http.Header, n)
	for i := range bodies {
		ev := fakefeishu.Event(vtok, "ev"+strconv.Itoa(i), "om_"+strconv.Itoa(i), "oc_1", "p2p", "user", user1,
			"how do I reset my password? It says the link expired.")
		if encrypted {
			ev = fakefeishu.Encrypt(ekey, ev)
			headers[i] = fakefeishu.Sign(ekey, time.Now(), ev)
		}
		bodies[i] = ev
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%n == 0 {
			a.events = recent{}
		}
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(bodies[i%n]))
		for k, v := range headers[i%n] {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
		i++
	}
}

// BenchmarkEventPlain: a p2p message event with the verification token,
// from the request to its 200.
func BenchmarkEventPlain(b *testing.B) { benchEvents(b, false) }

// BenchmarkEventSignedEncrypted: the same signed (SHA-256) and encrypted
// (AES-256-CBC) as with encrypt_key set.
func BenchmarkEventSignedEncrypted(b *testing.B) { benchEvents(b, true) }

// BenchmarkEventToAckLoopback: signed, encrypted events POSTed over
// loopback HTTP by 8 clients a core (b.RunParallel), each timed from the
// request to its 200; p50 and p99 reported (the platform waits 3 s).
func BenchmarkEventToAckLoopback(b *testing.B) {
	ad, err := New(channels.Config{Name: "fs", Type: "feishu", Options: map[string]string{
		"app_id": appID, "app_secret": appSecret, "verification_token": vtok, "encrypt_key": ekey}}, nopHost{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(ad)
	defer srv.Close()
	const n = 4096
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fakefeishu.Encrypt(ekey, fakefeishu.Event(vtok, "ev"+strconv.Itoa(i), "om_"+strconv.Itoa(i), "oc_1", "p2p", "user", user1,
			"how do I reset my password? It says the link expired."))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var lat []time.Duration
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			body := bodies[next.Add(1)%n]
			h := fakefeishu.Sign(ekey, time.Now(), body)
			req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
			for k, v := range h {
				req.Header[k] = v
			}
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(start))
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
