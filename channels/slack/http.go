package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// maxSkew is how far a request's timestamp may be from our clock.
const maxSkew = 5 * time.Minute

// Why a request's signature is refused (HTTP 401).
var (
	errNoSignature  = errors.New("slack: X-Slack-Signature or X-Slack-Request-Timestamp is missing")
	errBadTimestamp = errors.New("slack: X-Slack-Request-Timestamp is not a Unix time in seconds")
	errStale        = errors.New("slack: X-Slack-Request-Timestamp is more than 5 minutes from now")
	errBadSignature = errors.New("slack: X-Slack-Signature does not match the body")
)

// verify checks Slack's v0 signature of a request: hex HMAC-SHA256 with
// the signing secret over "v0:" + timestamp + ":" + the raw body, in
// constant time, and the timestamp within five minutes of now.
func verify(secret []byte, timestamp, signature string, body []byte, now time.Time) error {
	if timestamp == "" || signature == "" {
		return errNoSignature
	}
	if len(timestamp) > 12 {
		return errBadTimestamp
	}
	var ts int64
	for i := range len(timestamp) {
		c := timestamp[i]
		if c < '0' || c > '9' {
			return errBadTimestamp
		}
		ts = ts*10 + int64(c-'0')
	}
	if d := now.Sub(time.Unix(ts, 0)); d > maxSkew || d < -maxSkew {
		return errStale
	}
	if len(signature) != 3+2*sha256.Size || signature[:3] != "v0=" {
		return errBadSignature
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(signature[3:])); err != nil {
		return errBadSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("v0:"))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{':'})
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), got[:]) {
		return errBadSignature
	}
	return nil
}

// ServeHTTP takes the Events API's requests (http mode): the signature
// and timestamp are checked over the raw body before it is parsed; a
// url_verification is answered with its challenge; an event's message is
// accepted (durably queued) before the 200, which Slack wants within 3 s
// (a model never runs in between). A retry (X-Slack-Retry-Num) of an
// event already taken is a duplicate the Host answers ErrDuplicate: 200
// again, no second turn.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.mode != ModeHTTP {
		httpError(w, http.StatusNotFound, "slack: this channel runs in socket mode: it takes no requests (mode: http for the Events API)")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "slack: the Events API POSTs")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, channels.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "slack: the body is over 1 MiB")
			return
		}
		httpError(w, http.StatusBadRequest, "slack: reading the body: "+err.Error())
		return
	}
	if err := verify(a.secret, r.Header.Get("X-Slack-Request-Timestamp"), r.Header.Get("X-Slack-Signature"), body, a.now()); err != nil {
		httpError(w, http.StatusUnauthorized, err.Error())
		return
	}
	var cb eventCallback
	if err := json.Unmarshal(body, &cb); err != nil {
		httpError(w, http.StatusBadRequest, "slack: the body is not an Events API JSON object")
		return
	}
	switch cb.Type {
	case "url_verification":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Challenge string `json:"challenge"`
		}{cb.Challenge})
		return
	case "event_callback":
		a.lazySelf(r.Context())
		if !a.accept(r.Context(), &cb) {
			// Slack sends it again (its retries come after 1 and 5 minutes).
			httpError(w, http.StatusServiceUnavailable, "slack: the event was not taken (busy or stopping): send it again")
			return
		}
	}
	// Unknown types and dropped events are answered 200 too: Slack must
	// not send them again.
	w.WriteHeader(http.StatusOK)
}

// lazySelf asks auth.test for our user id once (again at most once a
// minute after a failure) on the first event: in http mode no Run does
// it, and every node of a cluster serves events. Until it answers, the
// event's authorizations name our bot user, and our own posts carry a
// bot_id (FromBot).
func (a *Adapter) lazySelf(ctx context.Context) {
	a.mu.Lock()
	if a.self != "" || (!a.selfAt.IsZero() && a.now().Sub(a.selfAt) < time.Minute) {
		a.mu.Unlock()
		return
	}
	a.selfAt = a.now()
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := a.authTest(ctx); err != nil {
		a.host.Log().Warn("slack: auth.test", "err", channels.RedactError(err))
	}
}

// httpError answers status with {"error": msg}.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
