package gateway

import (
	"net/http/httptest"
	"testing"

	"github.com/moltbot/moltbot"
)

// Every retriable condition is a 503 with Retry-After; an upstream failure
// is a 502 (a client must not retry a turn that a model broke as if the
// cluster were only re-placing it).
func TestErrorStatuses(t *testing.T) {
	for _, c := range []struct {
		code   string
		status int
		retry  bool
	}{
		{moltbot.EMoved, 503, true},
		{moltbot.EShutdown, 503, true},
		{moltbot.EBusy, 503, true},
		{moltbot.ERateLimited, 429, true},
		{moltbot.EQuota, 429, false}, // waiting does not help
		{moltbot.EUnavailable, 502, false},
		{moltbot.ETimeout, 504, false},
		{moltbot.EInvalid, 400, false},
	} {
		w := httptest.NewRecorder()
		writeError(w, moltbot.Errorf(c.code, "x"))
		if w.Code != c.status || (w.Header().Get("Retry-After") != "") != c.retry {
			t.Errorf("%s: %d Retry-After %q, want %d retry %v", c.code, w.Code, w.Header().Get("Retry-After"), c.status, c.retry)
		}
		if w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %s", c.code, w.Header().Get("Content-Type"))
		}
	}
}
