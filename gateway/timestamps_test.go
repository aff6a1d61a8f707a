package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// isTimestampKey names the fields that hold a time. Any other field holding
// something that looks like a time in another convention fails too (see
// checkTimes), so a new field cannot slip in under another name.
func isTimestampKey(k string) bool {
	return k == "created" || k == "updated" || k == "time" || k == "expires" || strings.HasSuffix(k, "_at")
}

// checkTimes walks a JSON document and returns the paths of its timestamp
// fields, failing t unless each is an integer of Unix seconds within
// [from, to]. A number anywhere that is too large for Unix seconds of this
// era (milliseconds, microseconds, nanoseconds) or a string that parses as
// RFC 3339 fails as well: a time in another convention.
func checkTimes(t *testing.T, what, doc string, from, to int64) []string {
	t.Helper()
	var v any
	d := json.NewDecoder(strings.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v: %s", what, err, doc)
	}
	var paths []string
	var walk func(path, key string, v any)
	walk = func(path, key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(path+"."+k, k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), key, c)
			}
		case json.Number:
			n, err := x.Int64()
			if isTimestampKey(key) {
				paths = append(paths, path)
				if err != nil || n < from || n > to {
					t.Errorf("%s: %s = %s, want Unix seconds in [%d, %d]", what, path, x, from, to)
				}
			} else if err == nil && (n >= 1e11 || n <= -1e11) {
				t.Errorf("%s: %s = %s looks like a time in milliseconds or finer", what, path, x)
			}
		case string:
			if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
				t.Errorf("%s: %s = %q is an RFC 3339 time; the API's times are Unix seconds", what, path, x)
			}
			if isTimestampKey(key) {
				paths = append(paths, path)
				t.Errorf("%s: %s = %q, want Unix seconds", what, path, x)
			}
		default:
			if isTimestampKey(key) && v != nil {
				paths = append(paths, path)
				t.Errorf("%s: %s = %v, want Unix seconds", what, path, x)
			}
		}
	}
	walk("", "", v)
	sort.Strings(paths)
	return paths
}

// Every timestamp of the OpenAI-compatible API and of the conversations API
// is Unix seconds (OpenAI's `created`), whatever the node stores.
func TestTimestampsAreUnixSeconds(t *testing.T) {
	from := time.Now().Unix()
	e := setup(t, []string{"sim/sim"})
	var to int64
	check := func(what, doc string, want ...string) {
		t.Helper()
		to = time.Now().Unix()
		if got := checkTimes(t, what, doc, from, to); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: timestamp fields %q, want %q: %s", what, got, want, doc)
		}
	}
	stream := func(what, url, body string) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		frames := sseFrames(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(frames) < 3 || frames[len(frames)-1] != "[DONE]" {
			t.Fatalf("%s: %d %q", what, resp.StatusCode, frames)
		}
		for i, f := range frames[:len(frames)-1] {
			check(fmt.Sprintf("%s, chunk %d", what, i), f, ".created")
		}
	}
	ok := func(resp *http.Response, body []byte, status int) string {
		t.Helper()
		if resp.StatusCode != status {
			t.Fatalf("%s %s: %d %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body)
		}
		return string(body)
	}

	// The OpenAI-compatible API.
	resp, body := do(t, "POST", e.url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`)
	check("chat completion", ok(resp, body, 200), ".created")
	stream("streamed chat completion", e.url+"/v1/chat/completions", `{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	resp, body = do(t, "GET", e.url+"/v1/models", "")
	check("models", ok(resp, body, 200), ".data[0].created", ".data[1].created")

	// The conversations API.
	resp, body = do(t, "POST", e.url+"/v1/conversations", `{"id":"ts","system":"be brief"}`)
	check("created conversation", ok(resp, body, 201), ".created", ".messages[0].created", ".updated")
	resp, body = do(t, "POST", e.url+"/v1/conversations/ts/messages", `{"content":"hello"}`)
	check("turn", ok(resp, body, 200), ".message.created")
	stream("streamed turn", e.url+"/v1/conversations/ts/messages", `{"content":"more","stream":true}`)
	resp, body = do(t, "GET", e.url+"/v1/conversations/ts", "")
	check("conversation", ok(resp, body, 200), ".created", ".messages[0].created", ".messages[1].created",
		".messages[2].created", ".messages[3].created", ".messages[4].created", ".updated")

	// The stored times are milliseconds; the wire rounds them down.
	c, err := e.rt.Get(t.Context(), "default", "ts")
	if err != nil {
		t.Fatal(err)
	}
	var wire conversationJSON
	json.Unmarshal(body, &wire)
	if c.Created/1000 != wire.Created || c.Updated/1000 != wire.Updated || len(c.Messages) != 4 ||
		c.Messages[3].Created/1000 != wire.Messages[4].Created || c.Messages[3].Created < 1e12 {
		t.Errorf("stored %+v, on the wire %s", c, body)
	}
}
