package moltbot

import (
	"encoding/json"
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

// The external id lives in a user message's ID; replies and other ids
// have none.
func TestMessageExternalID(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		want string
	}{
		{Message{Role: RoleUser, ID: ExternalIDPrefix + "evt-1"}, "evt-1"},
		{Message{Role: RoleUser, ID: "node1-7"}, ""},
		{Message{Role: RoleAssistant, ID: ExternalIDPrefix + "evt-1:a"}, ""},
		{Message{Role: RoleUser}, ""},
	} {
		if got := tc.m.ExternalID(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestTextOf(t *testing.T) {
	parts := []Part{{Type: PartText, Text: "look: "}, {Type: PartImage, MIME: "image/png", Data: []byte{1}},
		{Type: PartText, Text: "a cat"}, {Type: PartToolResult, CallID: "c", Content: "not text"}}
	if got := TextOf(parts); got != "look: a cat" {
		t.Errorf("TextOf = %q", got)
	}
}

// A stored message of text only reads as it did before parts and
// metadata: clients of the JSON see no new keys.
func TestMessageJSONUnchanged(t *testing.T) {
	b, err := json.Marshal(Message{ID: "t1", Role: RoleUser, Content: "hi", Created: 5})
	if err != nil || string(b) != `{"id":"t1","role":"user","content":"hi","created":5}` {
		t.Errorf("%s %v", b, err)
	}
}
