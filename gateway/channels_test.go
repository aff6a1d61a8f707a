package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
)

// fakeChannels is the node's channels as the management service sees them.
type fakeChannels struct {
	mu    sync.Mutex
	tests []string
}

func (f *fakeChannels) Status() []channels.Status {
	return []channels.Status{{Name: "cha", Type: "webhook", Tenant: "a", State: channels.StateListening},
		{Name: "chb", Type: "slack", Tenant: "b", Bot: "sales", State: channels.StateElsewhere, Node: "n2"}}
}

func (f *fakeChannels) StatusOf(name string) (channels.Status, bool) {
	for _, s := range f.Status() {
		if s.Name == name {
			return s, true
		}
	}
	return channels.Status{}, false
}

func (f *fakeChannels) Test(ctx context.Context, name, to, text string) error {
	if to == "" {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "to", Message: "no address"}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tests = append(f.tests, name+" "+to+" "+text)
	return nil
}

// The channels' mount with auth on: no credential, any content type and
// origin reach the adapter; refused signatures past the budget are 429
// for the address. The admin endpoints show a tenant's own channels.
func TestChannelsDoors(t *testing.T) {
	store := storage.NewMemory()
	as, err := auth.New(auth.Config{Enabled: true, Tenants: []auth.Tenant{{ID: "a"}, {ID: "b"}}}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}),
		MaxInFlight: 4, Timeout: 5 * time.Second}}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: store, Metrics: metrics.New(""),
		HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	fc := &fakeChannels{}
	var hits int
	var hmu sync.Mutex
	adapter := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hmu.Lock()
		hits++
		hmu.Unlock()
		if r.Header.Get("X-Platform-Signature") != "good" {
			http.Error(w, `{"error":"bad signature"}`, http.StatusUnauthorized)
			return
		}
		w.Write([]byte("ok " + r.URL.Path))
	})
	c := chat.New(rt, as, chat.Config{})
	m := manage.New(manage.Config{Auth: as, Runtime: rt, Channels: fc})
	srv := httptest.NewServer(New(c, m, Config{Channels: adapter}))
	defer srv.Close()
	keys := map[string]string{}
	for name, k := range map[string][2]string{"op": {"default", "admin"}, "adminA": {"a", "admin"}, "chatA": {"a", "chat"}, "adminB": {"b", "admin"}} {
		key, _, err := as.CreateKey(k[0], name, auth.Scope(k[1]), 0)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = key
	}
	do := func(key, method, path, body string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+keys[key])
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	good := map[string]string{"X-Platform-Signature": "good", "Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}
	if code, body := do("", "POST", "/channels/cha/events", "a=b", good); code != 200 || body != "ok /channels/cha/events" {
		t.Fatalf("the mount without a credential: %d %q", code, body)
	}
	// The admin endpoints.
	list := func(key string) []string {
		code, body := do(key, "GET", "/v1/admin/channels", "", nil)
		if code != 200 {
			return []string{"code " + http.StatusText(code)}
		}
		var out struct{ Channels []channels.Status }
		json.Unmarshal([]byte(body), &out)
		var names []string
		for _, s := range out.Channels {
			names = append(names, s.Name)
		}
		return names
	}
	if got := strings.Join(list("op"), ","); got != "cha,chb" {
		t.Errorf("operator sees %s", got)
	}
	if got := strings.Join(list("adminA"), ","); got != "cha" {
		t.Errorf("tenant a's admin sees %s", got)
	}
	if got := strings.Join(list("chatA"), ","); got != "code Forbidden" {
		t.Errorf("a chat key: %s", got)
	}
	if code, _ := do("", "GET", "/v1/admin/channels", "", nil); code != 401 {
		t.Errorf("no credential: %d", code)
	}
	if code, _ := do("adminB", "GET", "/v1/admin/channels/cha", "", nil); code != 404 {
		t.Errorf("another tenant's channel: %d", code)
	}
	if code, body := do("adminB", "GET", "/v1/admin/channels/chb", "", nil); code != 200 || !strings.Contains(body, `"node":"n2"`) {
		t.Errorf("own channel: %d %s", code, body)
	}
	if code, _ := do("adminA", "POST", "/v1/admin/channels/cha/test", `{"to":"chat-1","text":"hi"}`, nil); code != 200 {
		t.Errorf("test: %d", code)
	}
	if code, _ := do("adminA", "POST", "/v1/admin/channels/chb/test", `{"to":"chat-1"}`, nil); code != 404 {
		t.Errorf("test of another tenant's channel: %d", code)
	}
	if code, body := do("adminA", "POST", "/v1/admin/channels/cha/test", `{"text":"hi"}`, nil); code != 400 || !strings.Contains(body, "no address") {
		t.Errorf("test without an address: %d %s", code, body)
	}
	if fc.tests[0] != "cha chat-1 hi" || len(fc.tests) != 1 {
		t.Errorf("tests %v", fc.tests)
	}
	// Refused signatures: 30 a minute, then 429 whatever is sent.
	for i := range channelFailures {
		if code, _ := do("", "POST", "/channels/cha/", "{}", nil); code != 401 {
			t.Fatalf("bad signature %d: %d", i, code)
		}
	}
	hmu.Lock()
	before := hits
	hmu.Unlock()
	if code, _ := do("", "POST", "/channels/cha/", "{}", good); code != 429 {
		t.Fatalf("past the budget: %d", code)
	}
	hmu.Lock()
	defer hmu.Unlock()
	if hits != before {
		t.Fatal("a request past the budget reached the adapter")
	}
}

// The refused signatures' table is bounded: addresses that all failed
// within the minute (a botnet, many IPv6 /64s) cannot grow it without
// end, nor make each new failure scan all of it (a full table is swept
// at most once a second). An address already counted is still refused
// past its budget.
func TestFailBudgetBounded(t *testing.T) {
	var b failBudget
	now := time.Unix(1_800_000_000, 0)
	for i := range channelFailures {
		_ = i
		b.fail("first", now)
	}
	for i := range 3 * maxFailClients {
		b.fail("c"+strconv.Itoa(i), now.Add(time.Duration(i)*time.Microsecond))
	}
	if n := len(b.m); n > maxFailClients {
		t.Fatalf("%d addresses kept, at most %d", n, maxFailClients)
	}
	if _, ok := b.allowed("first", now.Add(time.Second)); ok {
		t.Fatal("an address past its budget is let in once the table is full")
	}
	// A minute on, the table sweeps and counts new addresses again.
	later := now.Add(2 * time.Minute)
	for range channelFailures {
		b.fail("late", later)
	}
	if _, ok := b.allowed("late", later); ok {
		t.Fatal("a new address is not counted after the sweep")
	}
}
