package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/moltbot/moltbot"
)

// Ollama keys. The ollama CLI sends no bearer token: with OLLAMA_AUTH=1 it
// signs every request with its ed25519 key (~/.ollama/id_ed25519), as
// ollama's api/client.go and auth/auth.go do for ollama.com:
//
//	Authorization: <base64 of the SSH wire public key>:<base64 of the signature>
//
// over the challenge "METHOD,PATH?ts=UNIX", with ?ts=UNIX in the query. An
// admin registers the public key (the line of ~/.ollama/id_ed25519.pub) as
// a credential of a tenant; it is stored as a key record whose id is
// derived from the public key, so a request finds its record without a
// scan.
//
// The signature covers the method, the path and the time, not the body:
// whoever sees a signed request (on the wire without TLS, in a proxy's
// log) may send other bodies to the same method and path for as long as
// its ts is accepted. So an Ollama key has the chat scope only (never
// admin), ts must be within OllamaWindow of the node's clock either way,
// and the header is a credential to keep like a bearer token. A replay
// cache cannot close the window: ed25519 signatures are deterministic, so
// two honest requests to one path in the same second carry the same
// header (the CLI asks /api/show twice when it starts).

// OllamaWindow is how far a signed request's ts may be from the node's
// clock, either way: the replay window.
const OllamaWindow = 5 * time.Minute

// KindOllama marks a key record that is an Ollama public key.
const KindOllama = "ollama"

// ParseOllamaKey reads an Ollama public key as an admin gives it: the line
// of ~/.ollama/id_ed25519.pub ("ssh-ed25519 AAAA... [comment]"). It returns
// the key in SSH wire form.
func ParseOllamaKey(line string) ([]byte, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, fmt.Errorf("auth: ollama_key is empty; give the line of ~/.ollama/id_ed25519.pub (ssh-ed25519 AAAA...)")
	}
	if len(line) > 4096 {
		return nil, fmt.Errorf("auth: ollama_key is %d bytes; an ed25519 public key line is about 100", len(line))
	}
	pub, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("auth: ollama_key: not an SSH public key line (ssh-ed25519 AAAA...): %v", err)
	}
	if len(opts) > 0 || len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("auth: ollama_key must be one key, without authorized_keys options")
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("auth: ollama_key is a %s key; the ollama CLI signs with ssh-ed25519 keys", pub.Type())
	}
	return pub.Marshal(), nil
}

// ollamaKeyID is the record id of a public key (wire form): 8 characters
// of the key alphabet from its SHA-256.
func ollamaKeyID(wire []byte) string {
	h := sha256.Sum256(wire)
	return keyEnc.EncodeToString(h[:5])
}

// OllamaFingerprint is the key's fingerprint as ssh-keygen -l shows it.
func OllamaFingerprint(wire []byte) string {
	pub, err := ssh.ParsePublicKey(wire)
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(pub)
}

// CreateOllamaKey registers an Ollama public key (line: "ssh-ed25519
// AAAA...") for tenant, with the chat scope, given proof that the key's
// holder lets tenant use it (VerifyOllamaProof: the key's SSH signature of
// the tenant's name). ttl as CreateKey. A key that is registered and still
// works is a conflict; one revoked, expired or of a tenant since deleted
// is replaced.
func (s *Service) CreateOllamaKey(tenant, name string, scope Scope, line, proof string, ttl time.Duration) (*KeyInfo, error) {
	if scope == "" {
		scope = ScopeChat
	}
	if scope != ScopeChat {
		return nil, fmt.Errorf("auth: an Ollama key has the chat scope only (its signature does not cover the request body), not %q", scope)
	}
	wire, err := ParseOllamaKey(line)
	if err != nil {
		return nil, err
	}
	if err := VerifyOllamaProof(wire, proof, tenant); err != nil {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "ollama_proof", Message: err.Error()}
	}
	if ttl < 0 || ttl > MaxKeyLife {
		return nil, fmt.Errorf("auth: ttl must be between 0 and %s", MaxKeyLife)
	}
	if err := checkName("name", name); err != nil {
		return nil, err
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	t, ok := s.Tenant(tenant)
	if !ok {
		return nil, ErrNotFound
	}
	id := ollamaKeyID(wire)
	now := s.now()
	if old, err := s.getKey(id); err == nil {
		if _, bad := s.keyValid(old, now); bad == nil {
			return nil, &moltbot.Error{Code: moltbot.EConflict, Param: "ollama_key",
				Message: "this Ollama public key is already registered on this node; revoke the key that holds it first"}
		}
	} else if err != ErrNotFound {
		return nil, err
	}
	if ttl == 0 {
		ttl = t.RotateEvery
	}
	// Hash is the SHA-256 of random bytes that are thrown away: no API key
	// secret can ever match it (checkKey refuses the record anyway).
	k := &Key{ID: id, Tenant: tenant, Incarnation: t.Incarnation, Name: name, Scope: scope, Created: now.Unix(),
		Hash: hashSecret(randomString(20)), Kind: KindOllama, PublicKey: wire}
	if ttl > 0 {
		k.Expires = now.Add(ttl).Unix()
	}
	if err := s.putKey(k); err != nil {
		return nil, err
	}
	s.log.Info("ollama key registered", "key_id", k.ID, "tenant", tenant, "name", name, "fingerprint", OllamaFingerprint(wire))
	return s.info(k), nil
}

// maxOllamaHeader bounds the Authorization header of a signed request: an
// ed25519 key and signature take about 160 bytes.
const maxOllamaHeader = 512

// isOllamaSignature reports whether an Authorization header is shaped as
// an Ollama signature (no scheme, "<base64>:<base64>").
func isOllamaSignature(h string) bool {
	return !strings.ContainsAny(h, " \t") && strings.IndexByte(h, ':') > 0
}

// checkOllama verifies a request signed by the ollama CLI and returns its
// principal.
func (s *Service) checkOllama(r *http.Request, h string) (*Principal, *Error) {
	wire, sig, ts, aerr := parseOllamaSignature(h, r.URL.RawQuery)
	if aerr != nil {
		return nil, aerr
	}
	pub, err := ssh.ParsePublicKey(wire)
	if err != nil || pub.Type() != ssh.KeyAlgoED25519 {
		return nil, unauthorized("malformed", "invalid_token", "the Ollama signature's public key is not an ssh-ed25519 key")
	}
	// The signature is checked before the record is looked up: an unknown
	// key costs what a known one does.
	challenge := r.Method + "," + r.URL.Path + "?ts=" + ts
	if pub.Verify([]byte(challenge), &ssh.Signature{Format: ssh.KeyAlgoED25519, Blob: sig}) != nil {
		return nil, unauthorized("bad_signature", "invalid_token",
			"the Ollama signature does not verify: it must sign %q (method, path and ts of this request)", challenge)
	}
	now := s.now()
	sec, _ := strconv.ParseInt(ts, 10, 64)
	if d := now.Sub(time.Unix(sec, 0)); d > OllamaWindow || d < -OllamaWindow {
		return nil, unauthorized("expired", "invalid_token",
			"the Ollama signature's ts is %s from the node's clock; at most %s is accepted (check the clocks)", d.Round(time.Second), OllamaWindow)
	}
	k, gerr := s.keyRecord(ollamaKeyID(wire))
	if gerr != nil || k.Kind != KindOllama || subtle.ConstantTimeCompare(k.PublicKey, wire) != 1 {
		return nil, unauthorized("unknown_key", "invalid_token",
			"this Ollama key (%s) is not registered on this node: an admin registers it with moltbot keys create --ollama-key", ssh.FingerprintSHA256(pub))
	}
	t, aerr := s.keyValid(k, now)
	if aerr != nil {
		return nil, aerr
	}
	p := &Principal{Tenant: k.Tenant, Space: t.Space(), Scope: k.Scope, KeyID: k.ID, Method: "ollama"}
	if k.Expires != 0 {
		p.Expires = time.Unix(k.Expires, 0)
		life := time.Duration(k.Expires-k.Created) * time.Second
		p.ExpiresSoon = p.Expires.Sub(now) < min(7*24*time.Hour, life/4)
	}
	return p, nil
}

// parseOllamaSignature splits an Ollama Authorization header into the
// public key (wire form) and the signature, and finds the request's ts in
// its raw query: exactly one ts, of decimal digits.
func parseOllamaSignature(h, rawQuery string) (wire, sig []byte, ts string, err *Error) {
	if len(h) > maxOllamaHeader {
		return nil, nil, "", unauthorized("malformed", "invalid_request", "the Authorization header is %d bytes; an Ollama signature is about 160", len(h))
	}
	k, sg, ok := strings.Cut(h, ":")
	wire, e1 := base64.StdEncoding.DecodeString(k)
	sig, e2 := base64.StdEncoding.DecodeString(sg)
	if !ok || e1 != nil || e2 != nil || len(wire) == 0 || len(sig) == 0 {
		return nil, nil, "", unauthorized("malformed", "invalid_request",
			"the Authorization header must be \"Bearer <credential>\", or an Ollama signature \"<base64 public key>:<base64 signature>\"")
	}
	for part := range strings.SplitSeq(rawQuery, "&") {
		v, found := strings.CutPrefix(part, "ts=")
		if !found {
			continue
		}
		if ts != "" || !digits(v) {
			return nil, nil, "", unauthorized("malformed", "invalid_request", "a signed Ollama request has one ts=<unix seconds> in its query")
		}
		ts = v
	}
	if ts == "" {
		return nil, nil, "", unauthorized("malformed", "invalid_request", "a signed Ollama request has ts=<unix seconds> in its query (OLLAMA_AUTH=1 adds it)")
	}
	return wire, sig, ts, nil
}

// digits reports whether s is 1 to 12 decimal digits (a unix time in
// seconds, for tens of thousands of years).
func digits(s string) bool {
	if len(s) == 0 || len(s) > 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
