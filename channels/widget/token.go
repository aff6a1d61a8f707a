package widget

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Visitor tokens. A visitor is a browser that asked for a session: it
// holds "v1.<visitor>.<expires>.<signature>", where visitor is 16 random
// bytes (base64url, 22 characters), expires Unix seconds, and signature
// HMAC-SHA256 under the channel's visitor_secret over the channel's name
// and the first three fields (base64url, 43 characters). Nothing is
// stored on the node: any node with the same secret verifies it, and the
// visitor's conversation is found from its id. A token names only its
// visitor: what it opens is that visitor's conversation of this channel.

const (
	tokenVersion  = "v1"
	visitorIDLen  = 22 // base64url of 16 bytes
	signatureLen  = 43 // base64url of 32 bytes
	maxTokenLen   = 96 // v1 . 22 . up to 12 digits . 43
	tokenDomain   = "moltbot-widget-visitor\x00"
	maxExpiryDigs = 12
)

// Errors of a token (all 401 to the client).
var (
	errTokenMalformed = errors.New("the visitor token is malformed; start a new session (POST api/session)")
	errTokenForged    = errors.New("the visitor token's signature does not match; start a new session (POST api/session)")
	errTokenExpired   = errors.New("the visitor token has expired; start a new session (POST api/session)")
)

// signer signs and checks the visitor tokens of one channel.
type signer struct {
	channel string
	secret  []byte
	macs    *sync.Pool // of keyed HMACs, reset before each use; nil: a new one each time
}

func newSigner(channel string, secret []byte) signer {
	return signer{channel: channel, secret: secret,
		macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// newVisitorID is a fresh random visitor id.
func newVisitorID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// mac appends the signature of the token's body ("v1.<visitor>.<expires>")
// to dst.
func (s *signer) mac(dst []byte, body string) []byte {
	var h hash.Hash
	if s.macs != nil {
		h = s.macs.Get().(hash.Hash)
		h.Reset()
		defer s.macs.Put(h)
	} else {
		h = hmac.New(sha256.New, s.secret)
	}
	var buf [160]byte
	b := append(buf[:0], tokenDomain...)
	b = append(b, s.channel...)
	b = append(b, 0)
	b = append(b, body...)
	h.Write(b)
	return h.Sum(dst)
}

// sign returns visitor's token, good until expires.
func (s *signer) sign(visitor string, expires time.Time) string {
	body := tokenVersion + "." + visitor + "." + strconv.FormatInt(expires.Unix(), 10)
	var sum [32]byte
	return body + "." + base64.RawURLEncoding.EncodeToString(s.mac(sum[:0], body))
}

// verify returns the visitor a token names and when it expires, or why
// it is refused. The signature is checked (in constant time) before the
// expiry is believed.
func (s *signer) verify(tok string, now time.Time) (visitor string, expires time.Time, err error) {
	visitor, exp, sig, ok := parseToken(tok)
	if !ok {
		return "", time.Time{}, errTokenMalformed
	}
	var wantBuf, got [32]byte
	want := s.mac(wantBuf[:0], tok[:len(tok)-signatureLen-1])
	var sigBuf [signatureLen]byte
	if n, err := base64.RawURLEncoding.Decode(got[:], append(sigBuf[:0], sig...)); err != nil || n != 32 {
		return "", time.Time{}, errTokenMalformed
	}
	if !hmac.Equal(got[:], want) {
		return "", time.Time{}, errTokenForged
	}
	expires = time.Unix(exp, 0)
	if !now.Before(expires) {
		return "", time.Time{}, errTokenExpired
	}
	return visitor, expires, nil
}

// parseToken splits a token into its fields, checking their shapes only.
func parseToken(tok string) (visitor string, expires int64, sig string, ok bool) {
	if len(tok) > maxTokenLen {
		return "", 0, "", false
	}
	rest, found := strings.CutPrefix(tok, tokenVersion+".")
	if !found {
		return "", 0, "", false
	}
	visitor, rest, found = strings.Cut(rest, ".")
	if !found || len(visitor) != visitorIDLen || !tokenChars(visitor) {
		return "", 0, "", false
	}
	exp, sig, found := strings.Cut(rest, ".")
	if !found || len(exp) == 0 || len(exp) > maxExpiryDigs || exp[0] == '0' || len(sig) != signatureLen || !tokenChars(sig) {
		return "", 0, "", false
	}
	for i := 0; i < len(exp); i++ {
		if exp[i] < '0' || exp[i] > '9' {
			return "", 0, "", false
		}
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return "", 0, "", false
	}
	return visitor, n, sig, true
}

// bearer is the credential of an Authorization: Bearer header ("" without).
func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}
