package moltbot

import (
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{"abc": true, "A-b_c.d:e": true, "": false, ".x": false, "a/b": false, "a b": false,
		strings.Repeat("x", 128): true, strings.Repeat("x", 129): false, "ünï": false} {
		if ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v", s, !want)
		}
	}
}

// A tenant id is a ValidID narrowed: at most 64 bytes and no ':' (the
// incarnation separator of a tenant's space). Every tenant id is a valid
// space, so a conversation of any tenant can be stored.
func TestValidTenantID(t *testing.T) {
	for s, want := range map[string]bool{"acme": true, "a-b_c.d": true, "": false, ".x": false, "a:b": false, "a/b": false,
		strings.Repeat("x", 64): true, strings.Repeat("x", 65): false, DefaultTenant: true} {
		if ValidTenantID(s) != want {
			t.Errorf("ValidTenantID(%q) = %v", s, !want)
		}
		if ValidTenantID(s) && !ValidID(s) {
			t.Errorf("tenant id %q is not a valid space", s)
		}
	}
}
