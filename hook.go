package moltbot

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Signed webhooks, both ways: the hand-off's ticket webhook and the
// generic webhook channel post them, and the channel checks those it is
// sent. A request carries HeaderHookTimestamp (Unix seconds) and
// HeaderHookSignature: "sha256=" and the hex HMAC-SHA256, keyed by the
// shared secret, of the timestamp, ".", and the raw body. A receiver
// checks the signature in constant time before it parses the body, and
// refuses a timestamp more than a few minutes away (a replay).
const (
	HeaderHookTimestamp = "X-Moltbot-Timestamp"
	HeaderHookSignature = "X-Moltbot-Signature"
)

// SignHook returns the signature header's value for body at ts.
func SignHook(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	var b [20]byte
	m.Write(strconv.AppendInt(b[:0], ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	var sum [sha256.Size]byte
	out := make([]byte, 7+hex.EncodedLen(sha256.Size))
	copy(out, "sha256=")
	hex.Encode(out[7:], m.Sum(sum[:0]))
	return string(out)
}

// Errors of VerifyHook: the timestamp is missing, not an integer, or too
// far from now; the signature does not match.
var (
	ErrHookTimestamp = errors.New("the timestamp is missing or not a Unix time in seconds")
	ErrHookStale     = errors.New("the timestamp is too far from now")
	ErrHookSignature = errors.New("the signature does not match")
)

// VerifyHook checks a signed request's headers against its raw body: the
// timestamp within skew of now, then the signature, compared in constant
// time. The error wraps one of the ErrHook* values.
func VerifyHook(secret, tsHeader, sigHeader string, body []byte, now time.Time, skew time.Duration) error {
	if len(tsHeader) == 0 || len(tsHeader) > 19 {
		return fmt.Errorf("%s: %w", HeaderHookTimestamp, ErrHookTimestamp)
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil || tsHeader[0] == '+' {
		return fmt.Errorf("%s %q: %w", HeaderHookTimestamp, tsHeader, ErrHookTimestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > skew || d < -skew {
		return fmt.Errorf("%s is %s away from now (at most %s): %w", HeaderHookTimestamp, d.Round(time.Second), skew, ErrHookStale)
	}
	var got, want [sha256.Size]byte
	if !decodeSig(got[:], sigHeader) {
		return fmt.Errorf("%s: %w", HeaderHookSignature, ErrHookSignature)
	}
	m := hmac.New(sha256.New, []byte(secret))
	var b [20]byte
	m.Write(strconv.AppendInt(b[:0], ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	if !hmac.Equal(m.Sum(want[:0]), got[:]) {
		return fmt.Errorf("%s: %w", HeaderHookSignature, ErrHookSignature)
	}
	return nil
}

// decodeSig reads "sha256=" and 64 lower-case hex digits into dst; its
// shape is not secret, so it may be checked in any time.
func decodeSig(dst []byte, h string) bool {
	const prefix = "sha256="
	if len(h) != len(prefix)+2*len(dst) || h[:len(prefix)] != prefix {
		return false
	}
	h = h[len(prefix):]
	for i := range dst {
		hi, ok1 := unhex(h[2*i])
		lo, ok2 := unhex(h[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
