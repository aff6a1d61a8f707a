package moltbot

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// The signature is HMAC-SHA256 over "timestamp.body", hex, prefixed
// (the value computed by Python's hmac module).
func TestSignHook(t *testing.T) {
	got := SignHook("topsecret", 1700000000, []byte(`{"a":1}`))
	if want := "sha256=6a939b0c71853d606167625a15168ee9188c6a511c773ef4f42d307f3849e50f"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	now := time.Unix(1700000100, 0)
	if err := VerifyHook("topsecret", "1700000000", got, []byte(`{"a":1}`), now, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ts, sig string
		want    error
	}{
		{"", got, ErrHookTimestamp},
		{"1700000000.0", got, ErrHookTimestamp},
		{"+1700000000", got, ErrHookTimestamp},
		{"99999999999999999999", got, ErrHookTimestamp},
		{"1699999000", SignHook("topsecret", 1699999000, []byte(`{"a":1}`)), ErrHookStale},
		{"1700000000", got[:len(got)-1], ErrHookSignature},
		{"1700000000", "", ErrHookSignature},
	} {
		if err := VerifyHook("topsecret", tc.ts, tc.sig, []byte(`{"a":1}`), now, 5*time.Minute); !errors.Is(err, tc.want) {
			t.Errorf("ts %q sig %q: %v, want %v", tc.ts, tc.sig, err, tc.want)
		}
	}
}

// Only the signature of the body at the timestamp verifies.
func FuzzVerifyHook(f *testing.F) {
	f.Add("1700000000", "sha256=00", []byte("{}"))
	f.Add("", "", []byte(""))
	f.Add("-5", "sha256=", []byte("x"))
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		err := VerifyHook("k", ts, sig, body, now, 5*time.Minute)
		if err == nil {
			n, perr := strconv.ParseInt(ts, 10, 64)
			if perr != nil || sig != SignHook("k", n, body) {
				t.Fatalf("verified ts %q sig %q", ts, sig)
			}
		}
		// The right signature at that timestamp always verifies when fresh.
		if n, perr := strconv.ParseInt(ts, 10, 64); perr == nil && ts[0] != '+' && len(ts) <= 19 && n > now.Unix()-300 && n < now.Unix()+300 {
			if err := VerifyHook("k", ts, SignHook("k", n, body), body, now, 5*time.Minute); err != nil {
				t.Fatalf("a good signature refused: %v", err)
			}
		}
	})
}
