package openaiwire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

func TestUnknownField(t *testing.T) {
	if name, ok := UnknownField([]byte(`{"model":"m","":1}`)); !ok || name != "" {
		t.Errorf("a member named \"\": %q %v", name, ok)
	}
	for body, want := range map[string]string{
		`{"model":"m","messages":[{"role":"user","content":"x","extra":{"a":[1,{"b":"}"}]}}]}`: "",
		`{"Model":"m","TOOLS":[],"logprobs":false,"n":1}`:                                      "",
		`{"model":"m","frobnicate":{"x":[1,2]},"other":1}`:                                     "frobnicate",
		`{"model":"m","n":1,"user":"u","x\u0079":true}`:                                        "xy",
		` { "stream" : true , "temperature" : 0.5 , "zz" : null } `:                            "zz",
		`{"messages":[],"store":false,"metadata":{"a":"b"},"service_tier":"auto","q":"\"}"}`:   "q",
		`{"top_p":1e-3,"seed":-4,"stop":["]"],"k":[]}`:                                         "k",
		`[]`: "",
		`{}`: "",
	} {
		if got, _ := UnknownField([]byte(body)); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}

// FuzzUnknownField: on a valid JSON object, UnknownField names a member
// that encoding/json would not decode into ChatRequest, or "" when there
// is none; on any input it never panics.
func FuzzUnknownField(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":1,"b":[{"c":"d"}],"model":"x"}`))
	f.Add([]byte(`{"MODEL":"x","\u006eo":2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := UnknownField(body)
		var members map[string]json.RawMessage
		if json.Unmarshal(body, &members) != nil {
			return
		}
		unknown := 0
		for k := range members {
			if !knownField([]byte(k)) {
				unknown++
			}
		}
		if ok != (unknown > 0) {
			t.Fatalf("%q: %q %v, members %v", body, got, ok, members)
		}
		if _, member := members[got]; ok && (!member || knownField([]byte(got))) {
			t.Fatalf("%q: %q is not an unknown member", body, got)
		}
	})
}

var (
	png1x1 = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
	jpeg   = "\xff\xd8\xff\xe0\x00\x10JFIF\x00"
	gif    = "GIF89a\x01\x00\x01\x00"
	webp   = "RIFF\x1a\x00\x00\x00WEBPVP8L"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDecodeImageURL(t *testing.T) {
	for _, c := range []struct {
		url, mime, data string
	}{
		{"data:image/png;base64," + b64(png1x1), "image/png", png1x1},
		{"DATA:Image/JPEG;base64," + b64(jpeg), "image/jpeg", jpeg},
		{"data:image/jpg;base64," + b64(jpeg), "image/jpeg", jpeg},
		{"data:image/gif;name=a.gif;base64," + b64(gif), "image/gif", gif},
		{"data:image/webp;base64," + strings.TrimRight(b64(webp), "="), "image/webp", webp},
	} {
		mime, data, err := DecodeImageURL(c.url, 1<<10)
		if err != nil || mime != c.mime || string(data) != c.data {
			t.Errorf("%.40s: %q %q %v", c.url, mime, data, err)
		}
		if m2, d2, err := DecodeImageURL(DataURL(mime, data), 1<<10); err != nil || m2 != mime || !bytes.Equal(d2, data) {
			t.Errorf("%s: DataURL does not read back: %v", mime, err)
		}
	}
	for url, want := range map[string]string{
		"https://example.com/cat.png":                "only data: URLs",
		"http://169.254.169.254/latest":              "only data: URLs",
		"file:///etc/passwd":                         "only data: URLs",
		"data:image/png," + b64(png1x1):              "must be base64",
		"data:image/png;base64":                      "no ','",
		"data:image/svg+xml;base64," + b64("<svg/>"): `image type "image/svg+xml" is not accepted`,
		"data:image/png;base64,!!!!":                 "not valid base64",
		"data:image/png;base64," + b64(jpeg):         "not a image/png image",
		"data:image/png;base64,":                     "not a image/png image",
	} {
		_, _, err := DecodeImageURL(url, 1<<10)
		var ie *ImageError
		if !errors.As(err, &ie) || ie.TooLarge || !strings.Contains(ie.Msg, want) {
			t.Errorf("%.40s: %v, want %q", url, err, want)
		}
	}
	big := png1x1 + strings.Repeat("\x00", 2000)
	for _, max := range []int{len(big) - 1, 100} {
		_, _, err := DecodeImageURL("data:image/png;base64,"+b64(big), max)
		var ie *ImageError
		if !errors.As(err, &ie) || !ie.TooLarge {
			t.Errorf("max %d: %v", max, err)
		}
	}
	if _, _, err := DecodeImageURL("data:image/png;base64,"+b64(big), len(big)); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}

// FuzzDecodeImageURL: an image URL decodes to an accepted type whose data
// is within the limit and begins with its signature, or fails with an
// ImageError; never a panic.
func FuzzDecodeImageURL(f *testing.F) {
	for _, s := range []string{"data:image/png;base64," + b64(png1x1), "data:image/gif;base64," + b64(gif), "data:image/webp;base64," + b64(webp),
		"https://x/y.png", "data:,", "data:image/png;base64,====", "data:;base64,", "data:image/jpeg;a;b;base64," + b64(jpeg)} {
		f.Add(s, 64)
	}
	f.Fuzz(func(t *testing.T, url string, max int) {
		mime, data, err := DecodeImageURL(url, max)
		if err != nil {
			var ie *ImageError
			if !errors.As(err, &ie) {
				t.Fatalf("%q: %T %v", url, err, err)
			}
			return
		}
		if len(data) > max || !looksLike(mime, data) {
			t.Fatalf("%q: %s, %d bytes (max %d)", url, mime, len(data), max)
		}
	})
}

// FuzzToolChoice: tool_choice decodes to a mode (a string) or a named
// function, or fails with a FieldError naming tool_choice (or a JSON
// error); what decodes writes back as itself.
func FuzzToolChoice(f *testing.F) {
	for _, s := range []string{`"auto"`, `"none"`, `"required"`, `{"type":"function","function":{"name":"f"}}`, `{"type":"function"}`,
		`{"type":"custom","custom":{"name":"x"}}`, `5`, `null`, `"\u0061uto"`, `{"type":"function","function":{"name":""}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c ToolChoice
		err := json.Unmarshal([]byte(s), &c)
		if err != nil {
			var fe *FieldError
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			if !errors.As(err, &fe) && !errors.As(err, &se) && !errors.As(err, &te) {
				t.Fatalf("%s: %T %v", s, err, err)
			}
			if fe != nil && fe.Param != "tool_choice" {
				t.Fatalf("%s: param %q", s, fe.Param)
			}
			return
		}
		if c.Mode == "function" && c.Name == "" {
			t.Fatalf("%s: a function without a name", s)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back ToolChoice
		if err := json.Unmarshal(b, &back); err != nil || back != c {
			t.Fatalf("%s: %s reads back as %+v (%v)", s, b, back, err)
		}
	})
}

// Tool calls written by AppendReply and AppendToolCallDelta read back as
// OpenAI's objects, and put together as a streaming client does.
func TestAppendToolCalls(t *testing.T) {
	calls := []moltbot.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris \"FR\""}`}, {ID: "call_2", Name: "f", Arguments: "{}"}}
	var c Completion
	b := AppendReply(AppendHead(nil, "id", ObjectCompletion, 1, "m", "fp"), "", calls, "tool_calls", moltbot.Usage{})
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !bytes.Contains(b, []byte(`"content":null`)) {
		t.Errorf("a reply of tool calls only has content null: %s", b)
	}
	m := c.Choices[0].Message
	if len(m.ToolCalls) != 2 || m.ToolCalls[0].ID != "call_1" || m.ToolCalls[0].Type != "function" || m.ToolCalls[0].Function.Name != "get_weather" ||
		m.ToolCalls[0].Function.Arguments != calls[0].Arguments || m.ToolCalls[0].Index != nil || *c.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("%s", b)
	}
	b = AppendReply(AppendHead(nil, "id", ObjectCompletion, 1, "m", "fp"), "let me see", calls[:1], "tool_calls", moltbot.Usage{})
	if err := json.Unmarshal(b, &c); err != nil || c.Choices[0].Message.Content != "let me see" || len(c.Choices[0].Message.ToolCalls) != 1 {
		t.Errorf("%s: %v", b, err)
	}
	// A stream: call 0 in three pieces, call 1 whole.
	deltas := []moltbot.ToolCallDelta{{Index: 0, ID: "call_1", Name: "get_weather"}, {Index: 0, Arguments: `{"city":`}, {Index: 0, Arguments: `"Paris \"FR\""}`},
		{Index: 1, ID: "call_2", Name: "f", Arguments: "{}"}}
	var got []moltbot.ToolCall
	for i := range deltas {
		b := AppendToolCallDelta(AppendHead(nil, "id", ObjectChunk, 1, "m", "fp"), &deltas[i], i == 0)
		var c Completion
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		d := c.Choices[0].Delta
		if len(d.ToolCalls) != 1 || d.ToolCalls[0].Index == nil || (i == 0) != (d.Role == "assistant") {
			t.Fatalf("%s", b)
		}
		tc := d.ToolCalls[0]
		if head := deltas[i].ID != ""; head != (tc.Type == "function") || tc.ID != deltas[i].ID || tc.Function.Name != deltas[i].Name {
			t.Errorf("piece %d: id, type and name only on a call's first piece: %s", i, b)
		}
		got = moltbot.AddDelta(got, &moltbot.ToolCallDelta{Index: *tc.Index, ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	if len(got) != 2 || got[0] != calls[0] || got[1] != calls[1] {
		t.Errorf("put together: %+v", got)
	}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendToolCallDelta(AppendHead(buf[:0], "chatcmpl-1", ObjectChunk, 1, "p/m", "fp"), &deltas[1], false)
	}); n != 0 {
		t.Errorf("%v allocations a tool-call chunk", n)
	}
}
