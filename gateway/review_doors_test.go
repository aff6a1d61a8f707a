package gateway

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/auth"
)

// rawStatus sends one request line as given (no client normalizing its
// target) and returns the status and the body's start.
func rawStatus(t *testing.T, base, method, target string, hdr map[string]string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := method + " " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	for k, v := range hdr {
		req += k + ": " + v + "\r\n"
	}
	body := `{"model":"moltbot","stream":false,"messages":[{"role":"user","content":"hi"}]}`
	if method == "POST" {
		req += "Content-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	} else {
		req += "\r\n"
	}
	c.Write([]byte(req))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 200)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n])
}

func itoa(n int) string {
	s := ""
	for n >= 10 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return string(rune('0'+n)) + s
}

// TestReviewDoorsNeedACredential: no spelling of a new door's path is
// served without a credential when auth is on.
func TestReviewDoorsNeedACredential(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	for _, tc := range []struct{ method, target string }{
		{"POST", "/api/chat"}, {"POST", "//api/chat"}, {"POST", "/api//chat"}, {"POST", "/api/chat/"},
		{"POST", "/API/chat"}, {"POST", "/api/%63hat"}, {"POST", "/api%2Fchat"}, {"POST", "/./api/chat"},
		{"GET", "/api/tags"}, {"HEAD", "/api/tags"}, {"GET", "//api/tags"}, {"GET", "/api/tags/"}, {"GET", "/api/ps"},
		{"POST", "/api/show"}, {"POST", "/api/generate"}, {"POST", "/api/embed"}, {"POST", "/api/embeddings"},
		{"GET", "/api/../v1/admin/cache"}, {"GET", "/api/version/../../v1/admin/cache"}, {"GET", "/v1/admin/cache"},
		{"HEAD", "/v1/admin/cache"}, {"POST", "/v1/admin/cache/purge"}, {"POST", "/v1/admin/cache/purge/"},
		{"POST", "/v1/messages"}, {"POST", "/v1/messages/"}, {"POST", "//v1/messages"}, {"POST", "/v1/embeddings"},
		{"GET", "/api/version%2F..%2F..%2Fv1%2Fadmin%2Fcache"}, {"GET", "http://localhost/api/tags"},
		{"GET", "/%2e%2e/api/tags"}, {"OPTIONS", "/api/tags"}, {"GET", "*"},
	} {
		code, body := rawStatus(t, e.url, tc.method, tc.target, nil)
		switch code {
		case 401, 429, 400, 404, 405, 301, 307, 308: // 429: the failed-auth throttle
		default:
			t.Errorf("%s %s without a credential: %d %q", tc.method, tc.target, code, body)
		}
	}
	// x-api-key is a credential on /v1/messages only.
	key := map[string]string{"X-Api-Key": e.keys["chatA"]}
	if code, _ := rawStatus(t, e.url, "POST", "/v1/messages", key); code == 401 {
		t.Errorf("x-api-key on /v1/messages refused")
	}
	for _, tc := range []struct{ method, target string }{{"POST", "/api/chat"}, {"POST", "/v1/chat/completions"}, {"GET", "/v1/models"},
		{"POST", "/v1/embeddings"}, {"GET", "/api/tags"}, {"POST", "/v1/messages/"}, {"POST", "/v1/MESSAGES"}, {"POST", "/v1//messages"}} {
		if code, body := rawStatus(t, e.url, tc.method, tc.target, key); code != 401 && code != 429 {
			t.Errorf("x-api-key on %s %s: %d %q", tc.method, tc.target, code, body)
		}
	}
}
