package channels

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

func TestLimiterPaces(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &Limiter{Rate: 2, Burst: 2, now: func() time.Time { return now }}
	var waits []time.Duration
	for range 4 {
		waits = append(waits, l.reserve("c1"))
	}
	want := []time.Duration{0, 0, 500 * time.Millisecond, time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if d := l.reserve("c2"); d != 0 {
		t.Fatalf("another destination waits %v", d)
	}
	l.Hold("c2", 3*time.Second)
	if d := l.reserve("c2"); d != 3*time.Second {
		t.Fatalf("after Hold(3s) the wait is %v", d)
	}
}

func TestLimiterForgets(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &Limiter{Rate: 1, Burst: 1, now: func() time.Time { return now }}
	for i := range 1024 {
		l.reserve(string(rune('a'+i%26)) + strings.Repeat("x", i/26))
	}
	now = now.Add(2 * time.Minute)
	l.reserve("new")
	if len(l.dest) > 2 {
		t.Fatalf("%d destinations kept after they went idle", len(l.dest))
	}
}

func TestBackoff(t *testing.T) {
	for n := range 12 {
		d := Backoff(n, 100*time.Millisecond, 10*time.Second)
		if d < 50*time.Millisecond || d > 10*time.Second {
			t.Fatalf("attempt %d: %v", n, d)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, s := range []string{
		"https://api.telegram.org/bot123456:AAE-x_y/getUpdates?offset=4",
		"https://discord.com/api/webhooks/1234/abc.DEF-ghi/messages/@original",
		"https://x.example/hook?token=s3cret&x=1",
	} {
		got := Redact(s)
		for _, secret := range []string{"AAE-x_y", "abc.DEF-ghi", "s3cret"} {
			if strings.Contains(got, secret) {
				t.Fatalf("Redact(%q) = %q keeps a secret", s, got)
			}
		}
	}
	err := &url.Error{Op: "Post", URL: "https://api.telegram.org/bot1:SECRET/sendMessage", Err: errors.New("timeout")}
	if got := RedactError(err); strings.Contains(got, "SECRET") {
		t.Fatalf("RedactError: %q", got)
	}
}

// Retry: nil, duplicates and refusals are final; anything else is "not
// taken, for now", after the error's RetryAfter (at least a second).
func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		err   error
		again bool
		wait  time.Duration
	}{
		{nil, false, 0},
		{ErrDuplicate, false, 0},
		{duplicate{inFlight: true}, false, 0},
		{fmt.Errorf("%w: a bot", ErrRefused), false, 0},
		{errors.New("channels: writing the inbox: disk full"), true, time.Second},
		{&moltbot.Error{Code: moltbot.EBusy, RetryAfter: 30 * time.Second}, true, 30 * time.Second},
		{&moltbot.Error{Code: moltbot.EShutdown, RetryAfter: time.Millisecond}, true, time.Second},
	} {
		wait, again := Retry(tc.err)
		if again != tc.again || wait != tc.wait {
			t.Errorf("Retry(%v) = %v, %v; want %v, %v", tc.err, wait, again, tc.wait, tc.again)
		}
	}
}

// Progress keeps at most 256 replies, forgets the oldest, and Drop
// forgets one.
func TestProgress(t *testing.T) {
	var p Progress
	for i := range 300 {
		p.Set(fmt.Sprint("r", i), 2)
	}
	if p.Get("r0") != 0 || p.Get("r299") != 2 || len(p.sent) != 256 || len(p.order) != 256 {
		t.Fatalf("r0 %d, r299 %d, %d kept", p.Get("r0"), p.Get("r299"), len(p.sent))
	}
	p.Drop("r299")
	if p.Get("r299") != 0 || len(p.order) != 255 {
		t.Fatal("Drop kept the reply")
	}
}
