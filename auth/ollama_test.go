package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/storage"
)

// ollamaSigner signs as ollama's auth.Sign does: the SSH wire public key
// and the ed25519 signature, base64 each, joined by ':'.
type ollamaSigner struct {
	line  string
	sign  func(challenge string) string
	proof func(tenant string) string // the holder's proof for tenant (VerifyOllamaProof)
}

func newOllamaSigner(t testing.TB) ollamaSigner {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	signer, _ := ssh.NewSignerFromKey(priv)
	return ollamaSigner{line: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), sign: func(ch string) string {
		sig, err := signer.Sign(rand.Reader, []byte(ch))
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(sp.Marshal()) + ":" + base64.StdEncoding.EncodeToString(sig.Blob)
	}, proof: func(tenant string) string {
		p, err := SignOllamaProof(signer, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}}
}

// signedReq is method path?ts=ts signed over challenge ("" signs the
// request's own).
func signedReq(k ollamaSigner, method, path string, ts int64, challenge string) *http.Request {
	q := "ts=" + strconv.FormatInt(ts, 10)
	if challenge == "" {
		challenge = method + "," + path + "?" + q
	}
	r := httptest.NewRequest(method, path+"?"+q, nil)
	r.RemoteAddr = "192.0.2.1:1234"
	r.Header.Set("Authorization", k.sign(challenge))
	return r
}

func TestOllamaKeys(t *testing.T) {
	s, clk := newService(t, Config{Tenants: []Tenant{{ID: "a", RotateEvery: 48 * time.Hour}}})
	k := newOllamaSigner(t)
	now := clk.now().Unix()
	if _, err := s.Authenticate(signedReq(k, "POST", "/api/chat", now, "")); err == nil || err.Reason != "unknown_key" {
		t.Fatalf("unregistered: %v", err)
	}
	info, err := s.CreateOllamaKey("a", "laptop", "", k.line+" me@laptop", k.proof("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// The tenant's rotate_every is the key's life, as for an API key.
	if info.Kind != KindOllama || info.Scope != ScopeChat || info.OllamaKey != k.line || info.Expires != now+48*3600 || info.State != "active" {
		t.Fatalf("%+v", info)
	}
	p, aerr := s.Authenticate(signedReq(k, "POST", "/api/chat", now, ""))
	if aerr != nil || p.Tenant != "a" || p.Scope != ScopeChat || p.KeyID != info.ID || p.Method != "ollama" {
		t.Fatalf("%+v %v", p, aerr)
	}
	for _, tc := range []struct {
		name   string
		r      *http.Request
		reason string
	}{
		{"other path", signedReq(k, "POST", "/api/generate", now, "POST,/api/chat?ts="+strconv.FormatInt(now, 10)), "bad_signature"},
		{"other method", signedReq(k, "GET", "/api/chat", now, "POST,/api/chat?ts="+strconv.FormatInt(now, 10)), "bad_signature"},
		{"too old", signedReq(k, "POST", "/api/chat", now-int64(OllamaWindow/time.Second)-1, ""), "expired"},
		{"too new", signedReq(k, "POST", "/api/chat", now+int64(OllamaWindow/time.Second)+1, ""), "expired"},
		{"other key", signedReq(newOllamaSigner(t), "POST", "/api/chat", now, ""), "unknown_key"},
	} {
		if _, err := s.Authenticate(tc.r); err == nil || err.Reason != tc.reason || err.Status != 401 {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.reason)
		}
	}
	// Within the window either way, it passes.
	if _, err := s.Authenticate(signedReq(k, "POST", "/api/chat", now-int64(OllamaWindow/time.Second), "")); err != nil {
		t.Fatal(err)
	}
	// Not an API key; not rotated; not twice while it works.
	if _, err := s.checkKey("mb_" + info.ID + "_" + strings.Repeat("a", 32)); err == nil {
		t.Fatal("an Ollama key's record opened as an API key")
	}
	if _, _, err := s.RotateKey("", info.ID, 0); err == nil {
		t.Fatal("rotated")
	}
	var me *moltbot.Error
	if _, err := s.CreateOllamaKey("a", "", "", k.line, k.proof("a"), 0); !errors.As(err, &me) || me.Code != moltbot.EConflict {
		t.Fatalf("twice: %v", err)
	}
	// Expired with the tenant's policy, it stops, and may be registered again.
	clk.advance(49 * time.Hour)
	if _, err := s.Authenticate(signedReq(k, "POST", "/api/chat", clk.now().Unix(), "")); err == nil || err.Reason != "expired" {
		t.Fatalf("expired key: %v", err)
	}
	if _, err := s.CreateOllamaKey("a", "", ScopeChat, k.line, k.proof("a"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		scope Scope
		line  string
	}{
		{ScopeAdmin, k.line}, {"", ""}, {"", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC"}, {"", k.line + "\n" + k.line},
		{"", `command="ls" ` + k.line}, {"", "AAAA"},
	} {
		if _, err := s.CreateOllamaKey("a", "", bad.scope, bad.line, k.proof("a"), 0); err == nil {
			t.Errorf("registered %q with scope %q", bad.line, bad.scope)
		}
	}
	if _, err := s.CreateOllamaKey("nope", "", "", k.line, k.proof("nope"), 0); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

// An Ollama key reaches every node, and a record that breaks its rules is
// refused there.
func TestOllamaKeyReplicates(t *testing.T) {
	p := newPeers(t, 2, Config{Tenants: []Tenant{{ID: "a"}}})
	k := newOllamaSigner(t)
	info, err := p.s[0].CreateOllamaKey("a", "", "", k.line, k.proof("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if pr, err := p.s[1].Authenticate(signedReq(k, "GET", "/api/tags", p.c.now().Unix(), "")); err != nil || pr.KeyID != info.ID {
		t.Fatalf("%+v %v", pr, err)
	}
	rec, _ := p.s[0].getKey(info.ID)
	now := p.c.now()
	if err := rec.check(now); err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(k *Key){
		"admin":        func(k *Key) { k.Scope = ScopeAdmin },
		"other id":     func(k *Key) { k.ID = "abcdefgh" },
		"no key":       func(k *Key) { k.PublicKey = nil },
		"kind":         func(k *Key) { k.Kind = "ssh" },
		"api with key": func(k *Key) { k.Kind = "" },
		"successor":    func(k *Key) { k.Successor = "abcdefgh" },
	} {
		cp := *rec
		spoil(&cp)
		if cp.check(now) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseOllamaKey(f *testing.F) {
	k := newOllamaSigner(f)
	for _, s := range []string{k.line, k.line + " comment", "ssh-ed25519", "ssh-ed25519 AAAA", "", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		wire, err := ParseOllamaKey(line)
		if err != nil {
			return
		}
		if !validOllamaWire(wire) {
			t.Fatalf("%q: gave a key that is not ed25519", line)
		}
	})
}

// FuzzOllamaSignature feeds arbitrary headers and queries to the signature
// check: it never panics, and nothing but a signature of the request by the
// registered key passes.
func FuzzOllamaSignature(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := New(Config{Enabled: true, Now: func() time.Time { return now }, Tenants: []Tenant{{ID: "a"}}, FailureLimit: 1 << 30}, storage.NewMemory())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	k := newOllamaSigner(f)
	if _, err := s.CreateOllamaKey("a", "", "", k.line, k.proof("a"), 0); err != nil {
		f.Fatal(err)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	good := k.sign("GET,/api/tags?ts=" + ts)
	for _, seed := range [][2]string{
		{good, "ts=" + ts}, {good, "ts=" + ts + "&ts=" + ts}, {good, ""}, {good, "ts=-1"}, {good, "ts=1e9"}, {good, "a=b&ts=" + ts},
		{"AAAA:BBBB", "ts=1"}, {":", "ts=1"}, {good[:40] + ":" + good[40:], "ts=" + ts}, {strings.Repeat("A", 600) + ":x", "ts=1"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, h, query string) {
		r := httptest.NewRequest("GET", "/api/tags", nil)
		r.URL.RawQuery = query
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header["Authorization"] = []string{h}
		p, e := s.Authenticate(r)
		if e == nil {
			if p == nil || p.Method != "ollama" || h != good {
				t.Fatalf("accepted %q ?%s as %+v", h, query, p)
			}
			return
		}
		if p != nil || e.Status != 401 || e.Msg == "" {
			t.Fatalf("%q: %+v %+v", h, p, e)
		}
	})
}
