package widget

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/httpstatus"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// Codes of this edge only.
const (
	codeMethod    = "method_not_allowed"     // 405
	codeMediaType = "unsupported_media_type" // 415
)

// status maps an error code to the widget API's HTTP status: its own
// codes here, the domain's through httpstatus.Of (the gateway's mapping).
func status(code string) int {
	switch code {
	case codeMethod:
		return http.StatusMethodNotAllowed
	case codeMediaType:
		return http.StatusUnsupportedMediaType
	}
	return httpstatus.Of(code)
}

// appendError appends {"error":{"message","code","param"}}: the shape of
// the node's other APIs' errors (without OpenAI's "type").
func appendError(b []byte, err error) []byte {
	code := moltbot.ErrorCode(err)
	var e *moltbot.Error
	param := ""
	if errors.As(err, &e) {
		param = e.Param
	}
	b = append(b, `{"error":{"message":`...)
	b = jsonw.String(b, moltbot.ErrorMessage(err))
	b = append(b, `,"code":`...)
	b = jsonw.String(b, code)
	if param != "" {
		b = append(b, `,"param":`...)
		b = jsonw.String(b, param)
	}
	return append(b, "}}"...)
}

// writeError answers err with its status, a JSON body and, for busy and
// rate-limited answers, Retry-After.
func writeError(w http.ResponseWriter, err error) {
	code := moltbot.ErrorCode(err)
	h := w.Header()
	var e *moltbot.Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	} else if code == moltbot.ERateLimited || code == moltbot.EBusy || code == moltbot.EShutdown || code == moltbot.EMoved {
		h.Set("Retry-After", "1")
	}
	if code == moltbot.EUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="moltbot-widget"`)
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status(code))
	w.Write(append(appendError(make([]byte, 0, 256), err), '\n'))
}

func unauthorized(msg string) error {
	return &moltbot.Error{Code: moltbot.EUnauthorized, Message: msg}
}

func errMethod(want string) error {
	return &moltbot.Error{Code: codeMethod, Message: "this path answers " + want}
}
