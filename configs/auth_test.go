package configs

import (
	"strings"
	"testing"
)

// Issue #10, finding 7: an OAuth issuer without an audience accepted tokens
// meant for any other service of that issuer. The file must name the
// audience, or say "any" to mean it.
func TestIssuerNeedsAudience(t *testing.T) {
	issuer := func(aud string) string {
		return minimal + `auth:
  oauth:
    issuers:
      - issuer: https://idp.example
        jwks_url: https://idp.example/jwks` + aud + "\n"
	}
	_, err := Parse("m.yaml", []byte(issuer("")), env(nil))
	if err == nil || !strings.Contains(err.Error(), `m.yaml:11: auth.oauth.issuers[0].audience: is required`) || !strings.Contains(err.Error(), `audience: any`) {
		t.Fatalf("an issuer without audience: %v", err)
	}
	for _, aud := range []string{"\n        audience: moltbot-api", "\n        audience: any"} {
		c, err := Parse("m.yaml", []byte(issuer(aud)), env(nil))
		if err != nil {
			t.Fatalf("%q: %v", aud, err)
		}
		if got := c.Auth.OAuth.Issuers[0].Audience; got != strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(aud), "audience:")) {
			t.Fatalf("audience %q", got)
		}
	}
	for yaml, want := range map[string]string{
		minimal + "auth: {token_ttl: 48h}\n":         "auth.token_ttl: must be between 0s and 24h",
		minimal + "auth: {signing_rotate: 10000h}\n": "auth.signing_rotate: must be between 0s and 8760h",
	} {
		if _, err := Parse("m.yaml", []byte(yaml), env(nil)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v (want %q)", yaml, err, want)
		}
	}
}

func TestAuditConfig(t *testing.T) {
	c, err := Parse("m.yaml", []byte(minimal), env(nil))
	if err != nil || c.Audit.MaxEvents != 10000 || c.Audit.MaxAge.D().Hours() != 2160 {
		t.Fatalf("defaults: %+v %v", c.Audit, err)
	}
	_, err = Parse("m.yaml", []byte(minimal+"audit: {max_events: 5, max_age: 1m}\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "m.yaml:8: audit.max_events: must be between 100 and 1000000") ||
		!strings.Contains(err.Error(), "audit.max_age: must be at least 1h") {
		t.Fatalf("bounds: %v", err)
	}
}
