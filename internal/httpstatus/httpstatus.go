// Package httpstatus maps the domain's error codes (moltbot.E*) to HTTP
// statuses: the one mapping every HTTP edge (the gateway, the web widget)
// answers by. An edge's own codes (a 405, a 415) it maps itself first.
package httpstatus

import (
	"net/http"

	"github.com/moltbot/moltbot"
)

// Of is the HTTP status of a domain error code; an unknown code is 500.
func Of(code string) int {
	switch code {
	case moltbot.EInvalid:
		return http.StatusBadRequest
	case moltbot.ENotFound:
		return http.StatusNotFound
	case moltbot.EForbidden:
		return http.StatusForbidden
	case moltbot.EUnauthorized:
		return http.StatusUnauthorized
	case moltbot.EConflict:
		return http.StatusConflict
	case moltbot.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case moltbot.ERateLimited, moltbot.EQuota:
		return http.StatusTooManyRequests
	case moltbot.EBusy, moltbot.EShutdown, moltbot.EMoved, moltbot.ESlowClient:
		return http.StatusServiceUnavailable
	case moltbot.EUnavailable:
		return http.StatusBadGateway
	case moltbot.ETimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
