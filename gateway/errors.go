package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/httpstatus"
)

// Codes of the HTTP edge only (the domain has no word for them).
const (
	codeRequestTimeout   = "request_timeout"        // 408: the body came too slowly
	codeUnsupportedMedia = "unsupported_media_type" // 415: not the Content-Type required
)

// status maps an error code to its HTTP status: the gateway's own codes
// here, the domain's through httpstatus.Of (the mapping every HTTP edge
// shares).
func status(code string) int {
	switch code {
	case codeRequestTimeout:
		return http.StatusRequestTimeout
	case codeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	}
	return httpstatus.Of(code)
}

// errorType is the OpenAI error "type" for a code.
func errorType(code string) string {
	switch code {
	case moltbot.EInvalid, moltbot.ENotFound, moltbot.EConflict, moltbot.ETooLarge, codeRequestTimeout, codeUnsupportedMedia:
		return "invalid_request_error"
	case moltbot.ERateLimited:
		return "rate_limit_error"
	case moltbot.EQuota:
		return "insufficient_quota" // OpenAI's type for a spent quota
	case moltbot.EUnauthorized:
		return "authentication_error"
	case moltbot.EForbidden:
		return "permission_error"
	case moltbot.EBusy, moltbot.EShutdown, moltbot.EMoved:
		return "service_unavailable_error"
	}
	return "server_error"
}

// appendError appends OpenAI's error object: {"error":{"message","type","param","code"}}.
func appendError(b []byte, err error) []byte {
	code := moltbot.ErrorCode(err)
	var e *moltbot.Error
	param := ""
	if errors.As(err, &e) {
		param = e.Param
	}
	return openaiwire.AppendError(b, moltbot.ErrorMessage(err), errorType(code), param, code)
}

// writeError writes err as an OpenAI error body with its status and, for
// busy and rate-limited answers, Retry-After.
func writeError(w http.ResponseWriter, err error) {
	code := errorHeaders(w, err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status(code))
	w.Write(append(appendError(make([]byte, 0, 256), err), '\n'))
}

// errorHeaders sets the headers every error answer carries, whatever its
// API's body: Retry-After for busy and rate-limited answers, the bearer
// challenge of a 401, Connection: close after a body that came too
// slowly. It returns err's code.
func errorHeaders(w http.ResponseWriter, err error) string {
	code := moltbot.ErrorCode(err)
	var e *moltbot.Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	} else if code == moltbot.EBusy || code == moltbot.EShutdown || code == moltbot.EMoved || code == moltbot.ERateLimited {
		w.Header().Set("Retry-After", "1")
	}
	if code == moltbot.EUnauthorized {
		w.Header().Set("WWW-Authenticate", bearerChallenge(e))
	}
	if code == codeRequestTimeout {
		w.Header().Set("Connection", "close") // the rest of the body is not waited for
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	return code
}

// bearerChallenge is WWW-Authenticate for a refused bearer credential
// (RFC 6750 section 3): the error code (the domain error's Reason) and its
// description when the credential was there but wrong.
func bearerChallenge(e *moltbot.Error) string {
	if e == nil || e.Reason == "" {
		return `Bearer realm="moltbot"`
	}
	return fmt.Sprintf(`Bearer realm="moltbot", error=%q, error_description=%q`, e.Reason, strings.ReplaceAll(e.Message, `"`, "'"))
}

func invalid(param, format string, args ...any) error {
	e := moltbot.Errorf(moltbot.EInvalid, format, args...)
	e.Param = param
	return e
}
