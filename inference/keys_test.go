package inference

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"
)

// keyServer answers per key: a status for each, counted.
func keyServer(t *testing.T, status map[string]int, retryAfter string) (*httptest.Server, *sync.Map) {
	var hits sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		n, _ := hits.LoadOrStore(k, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		st := status[k]
		if st == 0 {
			st = 200
		}
		if st == 429 && retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func count(h *sync.Map, k string) int64 {
	if n, ok := h.Load(k); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func call(c *Credentials, url string) (*http.Response, error) {
	return DoWithKeys(context.Background(), "p", c, http.DefaultClient, func() (*http.Request, error) {
		return http.NewRequest("GET", url, nil)
	}, func(r *http.Request, key string) { r.Header.Set("Authorization", "Bearer "+key) },
		func(resp *http.Response) *Error { return FromStatus("p", resp.StatusCode, "", resp.Header) })
}

func TestKeyPoolFailsOverAndCoolsDown(t *testing.T) {
	srv, hits := keyServer(t, map[string]int{"k1": 429, "k2": 401}, "5")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewKeyPool([]string{"k1", "k2", "", "k3"})
	c.now = func() time.Time { return now }
	var cooled atomic.Int64
	c.OnCooldown = func() { cooled.Add(1) }
	resp, err := call(c, srv.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if count(hits, "k1") != 1 || count(hits, "k2") != 1 || count(hits, "k3") != 1 || cooled.Load() != 2 {
		t.Fatalf("hits k1 %d k2 %d k3 %d, cooldowns %d", count(hits, "k1"), count(hits, "k2"), count(hits, "k3"), cooled.Load())
	}
	// While k1 (Retry-After 5s) and k2 (1m) cool down, only k3 is used.
	for i := 0; i < 3; i++ {
		call(c, srv.URL)
	}
	if count(hits, "k3") != 4 || count(hits, "k1") != 1 {
		t.Fatalf("cooling keys used: k1 %d k3 %d", count(hits, "k1"), count(hits, "k3"))
	}
	st := c.Status()
	if st[0].State != "cooling" || st[1].State != "cooling" || st[2].State != "ok" || strings.Contains(fmt.Sprint(st), "k1") && st[0].Suffix == "k1" {
		t.Fatalf("status %+v", st)
	}
	now = now.Add(6 * time.Second) // k1's Retry-After is over
	call(c, srv.URL)
	call(c, srv.URL)
	if count(hits, "k1") < 2 {
		t.Fatal("k1 not used again after its Retry-After")
	}
	// k2 keeps failing with 401: after three it is disabled for good.
	for i := 0; i < 4; i++ {
		now = now.Add(2 * time.Minute)
		call(c, srv.URL)
		call(c, srv.URL)
		call(c, srv.URL)
	}
	if c.Status()[1].State != "disabled" {
		t.Fatalf("k2 not disabled: %+v", c.Status())
	}
	before := count(hits, "k2")
	now = now.Add(time.Hour)
	for i := 0; i < 5; i++ {
		call(c, srv.URL)
	}
	if count(hits, "k2") != before {
		t.Fatal("a disabled key was used")
	}
	// Reload re-enables a kept disabled key, drops removed ones, adds new ones.
	c.Replace([]string{"k2", "k4"})
	if st := c.Status(); len(st) != 2 || st[0].State != "ok" || st[1].State != "ok" {
		t.Fatalf("after reload %+v", st)
	}
	// ... and a kept key that is cooling stays cooling.
	_, err = call(c, srv.URL) // k2: 401, cooled for a minute
	if err != nil {
		t.Fatal(err)
	}
	c.Replace([]string{"k2", "k4"})
	if st := c.Status(); st[0].State != "cooling" {
		t.Fatalf("a reload ended a cooldown: %+v", st)
	}
	// A call that took a key before a reload reports after it: the report
	// must not land on the key now at the same position.
	d := NewKeyPool([]string{"old"})
	_, h, _ := d.Take(context.Background())
	d.Replace([]string{"new"})
	d.Report(h, 401, 0)
	if st := d.Status(); st[0].State != "ok" {
		t.Fatalf("a late report cooled the new key: %+v", st)
	}
}

func TestAllKeysCooling(t *testing.T) {
	srv, _ := keyServer(t, map[string]int{"a": 429, "b": 429}, "30")
	c := NewKeyPool([]string{"a", "b"})
	_, err := call(c, srv.URL)
	e, ok := AsError(err)
	if !ok || e.Kind != KindRateLimited || !e.Failover() {
		t.Fatalf("%v", err)
	}
	_, err = call(c, srv.URL)
	if e, ok := AsError(err); !ok || !strings.Contains(e.Message, "cooling") {
		t.Fatalf("second call: %v", err)
	}
}

// OAuth client credentials: one token for many calls, refreshed before it
// expires, one refresh at a time even under concurrency.
func TestOAuthCredentials(t *testing.T) {
	var issued atomic.Int64
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		id, secret, _ := r.BasicAuth()
		if r.PostForm.Get("grant_type") != "client_credentials" || id != "moltbot" || secret != "s3cret" {
			w.WriteHeader(401)
			return
		}
		n := issued.Add(1)
		time.Sleep(20 * time.Millisecond) // a slow issuer: concurrent callers must not each refresh
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":3600}`, n)
	}))
	defer tokenSrv.Close()
	api, hits := keyServer(t, nil, "")
	cc := &clientcredentials.Config{ClientID: "moltbot", ClientSecret: "s3cret", TokenURL: tokenSrv.URL, Scopes: []string{"llm"}}
	c := NewOAuth(cc.TokenSource(context.Background()))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := call(c, api.URL); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if issued.Load() != 1 || count(hits, "tok-1") != 20 {
		t.Fatalf("tokens issued %d, calls with tok-1 %d", issued.Load(), count(hits, "tok-1"))
	}
	bad := NewOAuth((&clientcredentials.Config{ClientID: "x", ClientSecret: "y", TokenURL: tokenSrv.URL}).TokenSource(context.Background()))
	if _, err := call(bad, api.URL); err == nil || !strings.Contains(err.Error(), "OAuth token") {
		t.Fatalf("bad client: %v", err)
	}
}
