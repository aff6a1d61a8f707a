package auth

import (
	"testing"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// The per-request cost of authentication, with the node's real store.
func benchService(b *testing.B) *Service {
	st, err := storage.Open(b.TempDir(), storage.Options{CacheSize: 8 << 20, MemtableSize: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	s, err := New(Config{Enabled: true, Tenants: []Tenant{{ID: "a", Limits: Limits{RequestsPerMinute: 1 << 30}}}}, st)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

func BenchmarkAuthenticateKey(b *testing.B) {
	s := benchService(b)
	key, _, _ := s.CreateKey("a", "", ScopeChat, 0)
	r := req(key)
	b.ReportAllocs()
	for b.Loop() {
		p, e := s.Authenticate(r)
		if e != nil {
			b.Fatal(e)
		}
		s.Allow(p)
	}
}

func BenchmarkAuthenticateToken(b *testing.B) {
	s := benchService(b)
	key, info, _ := s.CreateKey("a", "", ScopeChat, 0)
	tok, err := s.ClientCredentials("client_credentials", info.ID, key, "")
	if err != nil {
		b.Fatal(err)
	}
	r := req(tok.AccessToken)
	b.ReportAllocs()
	for b.Loop() {
		if _, e := s.Authenticate(r); e != nil {
			b.Fatal(e)
		}
	}
}

func BenchmarkMergeState(b *testing.B) {
	s := benchService(b)
	for i := 0; i < 1000; i++ {
		s.CreateKey("a", "", ScopeChat, time.Hour)
	}
	state := s.State()
	b.SetBytes(int64(len(state)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Merge(state); err != nil {
			b.Fatal(err)
		}
	}
}

// The signature check a cache miss pays (ES256).
func BenchmarkVerifyToken(b *testing.B) {
	s := benchService(b)
	key, info, _ := s.CreateKey("a", "", ScopeChat, 0)
	tok, _ := s.ClientCredentials("client_credentials", info.ID, key, "")
	b.ReportAllocs()
	for b.Loop() {
		if _, e := s.verifyJWT(tok.AccessToken); e != nil {
			b.Fatal(e)
		}
	}
}
