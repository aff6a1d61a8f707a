package inference

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "5": 5 * time.Second, "0.5": 500 * time.Millisecond, "-1": 0, "soon": 0,
		now.Add(30 * time.Second).Format(http.TimeFormat): 30 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFromStatus(t *testing.T) {
	for status, want := range map[int]Kind{400: KindBadRequest, 401: KindAuth, 403: KindAuth, 404: KindModelNotFound, 408: KindTimeout,
		413: KindBadRequest, 422: KindBadRequest, 429: KindRateLimited, 500: KindUnavailable, 503: KindUnavailable, 504: KindTimeout, 529: KindUnavailable} {
		h := http.Header{"Retry-After": {"3"}}
		e := FromStatus("p", status, "", h)
		if e.Kind != want || e.RetryAfter != 3*time.Second || e.Message == "" {
			t.Errorf("%d: %+v", status, e)
		}
	}
	if (&Error{Kind: KindBadRequest}).Failover() || !(&Error{Kind: KindRateLimited}).Failover() || (&Error{Kind: KindCanceled}).Failover() {
		t.Error("Failover wrong")
	}
	codes := map[Kind]string{KindTimeout: moltbot.ETimeout, KindRateLimited: moltbot.ERateLimited, KindBadRequest: moltbot.EInvalid,
		KindBusy: moltbot.EBusy, KindUnavailable: moltbot.EUnavailable, KindStream: moltbot.EUnavailable}
	for k, c := range codes {
		if (&Error{Kind: k}).Code() != c {
			t.Errorf("%v -> %s", k, (&Error{Kind: k}).Code())
		}
	}
}

func TestClassify(t *testing.T) {
	bg := context.Background()
	expired, cancel := context.WithTimeout(bg, -time.Second)
	defer cancel()
	canceled, cancel2 := context.WithCancel(bg)
	cancel2()
	cases := []struct {
		ctx  context.Context
		err  error
		want Kind
	}{
		{bg, fmt.Errorf("dial: %w", syscall.ECONNREFUSED), KindUnavailable},
		{bg, io.ErrUnexpectedEOF, KindStream},
		{bg, fmt.Errorf("read: %w", syscall.ECONNRESET), KindStream},
		{expired, errors.New("whatever"), KindTimeout},
		{canceled, errors.New("whatever"), KindCanceled},
		{bg, &Error{Kind: KindAuth}, KindAuth},
		{bg, errors.New("odd"), KindUnavailable},
	}
	for _, tc := range cases {
		if got := Classify(tc.ctx, "p", tc.err); got.Kind != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got.Kind, tc.want)
		}
	}
}

func TestEstimateTokens(t *testing.T) {
	if n := EstimateTokens([]moltbot.Message{{Content: "12345678"}, {Content: ""}}); n != 4+2+4 {
		t.Errorf("estimate = %d", n)
	}
}

// A provider's failure is a domain error too: its code is decided by its
// kind, once (Code), wherever it surfaces.
func TestErrorIsADomainError(t *testing.T) {
	for kind, code := range map[Kind]string{KindTimeout: moltbot.ETimeout, KindRateLimited: moltbot.ERateLimited,
		KindBadRequest: moltbot.EInvalid, KindBusy: moltbot.EBusy, KindUnavailable: moltbot.EUnavailable} {
		err := fmt.Errorf("wrapped: %w", &Error{Kind: kind, Provider: "p", Message: "m", RetryAfter: time.Second})
		var me *moltbot.Error
		if !errors.As(err, &me) || me.Code != code || moltbot.ErrorCode(err) != code || me.RetryAfter != time.Second {
			t.Errorf("%v: %+v", kind, me)
		}
	}
}
