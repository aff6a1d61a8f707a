package auth

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// FuzzAuthenticate feeds arbitrary Authorization headers: the service never
// panics, accepts nothing but the credentials it issued, and its 401s carry
// a WWW-Authenticate value that is one printable line.
func FuzzAuthenticate(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := New(Config{Enabled: true, Now: func() time.Time { return now }, Tenants: []Tenant{{ID: "a"}},
		FailureLimit: 1 << 30}, storage.NewMemory())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	key, info, _ := s.CreateKey("a", "k", ScopeChat, 0)
	tok, err := s.ClientCredentials("client_credentials", info.ID, key, "")
	if err != nil {
		f.Fatal(err)
	}
	valid := map[string]bool{key: true, tok.AccessToken: true}
	for _, seed := range []string{
		"Bearer " + key, "Bearer " + tok.AccessToken, "bearer  " + key + " ", "Basic " + key, "Bearer", "",
		"Bearer mb_", "Bearer mb_abcdefgh_" + strings.Repeat("a", 26), "Bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30.",
		"Bearer " + tok.AccessToken[:len(tok.AccessToken)-2] + "AA", "Bearer " + key[:len(key)-1] + "\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header["Authorization"] = []string{h}
		p, e := s.Authenticate(r)
		if e == nil {
			_, cred, _ := strings.Cut(h, " ")
			if p == nil || !valid[strings.TrimSpace(cred)] {
				t.Fatalf("accepted %q as %+v", h, p)
			}
			return
		}
		if p != nil || e.Status != 401 || e.Msg == "" {
			t.Fatalf("%q: %+v %+v", h, p, e)
		}
		for _, c := range e.WWWAuthenticate() {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("%q: control character in WWW-Authenticate %q", h, e.WWWAuthenticate())
			}
		}
	})
}
