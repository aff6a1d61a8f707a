package ollama

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ollama/ollama/api"
)

// readLines reads every line of in through a lineReader.
func readLines(r io.Reader, max int) ([]string, error) {
	lr := getLineReader(r, max)
	defer putLineReader(lr)
	var out []string
	for {
		l, err := lr.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(l))
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 3*readerSize+17) // spans several buffer fills
	cases := []struct {
		name string
		in   string
		max  int
		want []string
		err  error
	}{
		{"lines", "a\nbc\n", 10, []string{"a", "bc"}, nil},
		{"last line without newline", "a\nbc", 10, []string{"a", "bc"}, nil},
		{"empty lines kept", "\n\na\n", 10, []string{"", "", "a"}, nil},
		{"crlf kept for the decoder", "a\r\n", 10, []string{"a\r"}, nil},
		{"exactly the bound", "abcd\nabcd", 4, []string{"abcd", "abcd"}, nil},
		{"over the bound", "abcd\nabcde\n", 4, []string{"abcd"}, errLineTooLong},
		{"last line over the bound", "abcde", 4, nil, errLineTooLong},
		{"long line assembled", long + "\nz\n", len(long), []string{long, "z"}, nil},
		{"long line over the bound", long + "\n", len(long) - 1, nil, errLineTooLong},
		{"empty input", "", 10, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for mode, r := range map[string]io.Reader{
				"whole":    strings.NewReader(tc.in),
				"one byte": iotest.OneByteReader(strings.NewReader(tc.in)),
				"halves":   iotest.HalfReader(strings.NewReader(tc.in)),
			} {
				got, err := readLines(r, tc.max)
				if !errors.Is(err, tc.err) || !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s: got %q, %v; want %q, %v", mode, got, err, tc.want, tc.err)
				}
			}
		})
	}
}

// A line far over the bound is refused once the bound is passed: the reader
// never holds the whole line.
func TestLineReaderStopsAtTheBound(t *testing.T) {
	r := &countingReader{r: io.MultiReader(strings.NewReader("{"), infinite{})}
	_, err := readLines(r, 64<<10)
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("err = %v", err)
	}
	if r.n > 64<<10+2*readerSize {
		t.Fatalf("read %d bytes of an endless line with a 64 KiB bound", r.n)
	}
}

type infinite struct{}

func (infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestLineReaderPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	got, err := readLines(io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom)), 10)
	if !errors.Is(err, boom) || len(got) != 1 || got[0] != "a" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Lines as Ollama writes them take the fast path (no encoding/json), and a
// token line costs one allocation: its text.
func TestScanLineFastPath(t *testing.T) {
	lines := []string{
		line("Hel", false),
		line("lo \"quoted\" <b> & \\ \n\t é 😀", false),
		line("", true),
		`{"model":"llama3.2","created_at":"2024-08-04T15:52:19.385406455Z","message":{"role":"assistant","content":"","thinking":"hmm"},"done":false}`,
		`{"model":"gpt-oss:120b-cloud","remote_model":"gpt-oss:120b","remote_host":"https://ollama.com:443","created_at":"2025-01-01T00:00:00+05:30","message":{"role":"assistant","content":"x"},"done":true,"done_reason":"length","total_duration":-1,"eval_count":0}`,
		`{"error":"out of memory"}`,
		`{}`,
		" { \"done\" : true } \r",
		`{"message":{"content":"\ud83d\ude00 \u00e9 \ud800 x"}}`,
	}
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\n")
		var fast, slow api.ChatResponse
		msg, ok := scanLine([]byte(l), &fast, nil)
		if !ok {
			t.Errorf("not the fast path: %s", l)
			continue
		}
		smsg, err := decodeSlow([]byte(l), &slow)
		if err != nil || msg != smsg || (msg == "" && !reflect.DeepEqual(fast, slow)) {
			t.Errorf("%s:\nfast %q %+v\nslow %q %+v %v", l, msg, fast, smsg, slow, err)
		}
	}

	tok := []byte(strings.TrimSuffix(line(" token", false), "\n"))
	var resp api.ChatResponse
	if _, err := decodeLine(tok, &resp); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { decodeLine(tok, &resp) }); n > 1 {
		t.Errorf("a token line costs %v allocations, want 1 (its text)", n)
	}
}

// Lines the fast path leaves to encoding/json, and what json makes of them.
func TestDecodeLineSlowPath(t *testing.T) {
	cases := []struct {
		line    string
		content string
		errMsg  string
		bad     bool
	}{
		{`{"Message":{"Content":"x"}}`, "x", "", false}, // encoding/json folds case
		{`{"message":{"content":"a"},"message":{"content":"b"}}`, "b", "", false},
		{`{"message":{"content":"x","images":null}}`, "x", "", false},
		{`{"unknown":[1,{"a":2}],"message":{"content":"x"}}`, "x", "", false},
		{`{"mod\u0065l":"m","message":{"content":"x"}}`, "x", "", false},
		{`null`, "", "", false},
		{`{"error":"boom","done":"not a bool"}`, "", "boom", false},
		{`{"done":"yes"}`, "", "", true},
		{`{"eval_count":1.5}`, "", "", true},
		{`{"eval_count":01}`, "", "", true},
		{`{"eval_count":99999999999999999999}`, "", "", true},
		{`{"created_at":"yesterday"}`, "", "", true},
		{`{"message":{"content":"\x01"}}`, "", "", true},
		{`{"message":{"content":"\q"}}`, "", "", true},
		{`{"done":true}x`, "", "", true},
		{`{"done":true`, "", "", true},
		{`{"signin_url":5}`, "", "", true},
		{`[]`, "", "", true},
		{`not json`, "", "", true},
	}
	for _, tc := range cases {
		var resp api.ChatResponse
		msg, err := decodeLine([]byte(tc.line), &resp)
		if (err != nil) != tc.bad || msg != tc.errMsg || resp.Message.Content != tc.content {
			t.Errorf("%s: content %q, msg %q, err %v", tc.line, resp.Message.Content, msg, err)
		}
	}
}

// FuzzDecodeLineMatchesEncodingJSON checks decodeLine against ollama/api's
// own decoding (an {"error"} struct, then api.ChatResponse with
// encoding/json): the same error or not, the same error message, and the
// same api.ChatResponse, whatever the previous line left in resp.
func FuzzDecodeLineMatchesEncodingJSON(f *testing.F) {
	for _, l := range []string{
		line("Hel", false), line("a\"\\\n<é>", false), line("", true),
		`{"error":"model \"x\" not found"}`, `{}`, ` null `, `{"done":tru}`,
		`{"model":"m","message":{"role":"ASSISTANT","content":"\u00e9\ud83d\ude00\udc00","tool_name":"t","tool_call_id":"1"}}`,
		`{"created_at":"2024-08-04T08:52:19.385406455-07:00","prompt_eval_count":-0,"eval_count":2147483648,"total_duration":-9223372036854775808}`,
		`{"message":{"content":"a"},"message":null}`, "{\"done\":\ttrue\r}", `{"done_reason":"\ud800\u0041"}`,
		toolLine(`{"id":"call_a","function":{"index":0,"name":"f","arguments":{"a":1}}},{"function":{"name":"g","arguments":{}}}`),
		`{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":"x"}}]}}`,
	} {
		f.Add([]byte(strings.TrimSuffix(l, "\n")))
	}
	prevLine := []byte(strings.TrimSuffix(line("tok", false), "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var want api.ChatResponse
		wantMsg, wantErr := decodeSlow(in, &want)
		for _, prev := range [][]byte{nil, prevLine, in} {
			var got api.ChatResponse
			if prev != nil {
				decodeLine(prev, &got)
			}
			msg, err := decodeLine(in, &got)
			if (err != nil) != (wantErr != nil) || msg != wantMsg {
				t.Fatalf("%q: msg %q err %v; encoding/json: msg %q err %v", in, msg, err, wantMsg, wantErr)
			}
			if err == nil && msg == "" && !reflect.DeepEqual(got, want) {
				t.Fatalf("%q:\n got %#v\nwant %#v", in, got, want)
			}
		}
	})
}

func TestBlank(t *testing.T) {
	for in, want := range map[string]bool{"": true, " \t\r": true, " x": false, "\f": false, "\v": false} {
		if blank([]byte(in)) != want {
			t.Errorf("blank(%q) != %v", in, want)
		}
	}
}

// FuzzLineShapeMatchesEncodingJSON: a line a lineShape learned from another
// line takes decodes exactly as ollama/api's encoding/json does. The shape
// learns from the first input; then the second is decoded, and a third made
// of the first with arbitrary bytes between quotes where its created_at
// and its text were (the case the shape exists for: it must refuse what
// is not one valid time and one valid string there, or a member smuggled
// in).
func FuzzLineShapeMatchesEncodingJSON(f *testing.F) {
	tok := strings.TrimSuffix(line("tok", false), "\n")
	f.Add([]byte(tok), []byte(strings.TrimSuffix(line(" next", false), "\n")), []byte("2024-08-04T08:52:20.1Z"), []byte(`a\"b\u00e9`))
	f.Add([]byte(tok), []byte(strings.TrimSuffix(line("", true), "\n")), []byte(`2024-08-04T08:52:20Z","x":"`), []byte(`x","content":"y`))
	f.Add([]byte(`{"created_at":"2024-08-04T08:52:19Z","message":{"content":"a"}}`), []byte(`{"created_at":"yesterday","message":{"content":"a"}}`), []byte(`yesterday`), []byte(`\q`))
	f.Add([]byte(`{"message":{"content":"a"},"created_at":"2024-08-04T08:52:19Z"}`), []byte(`{"message":{"content":"b"},"created_at":"2024-08-04T08:52:19Z"}`), []byte(`2024-08-04T08:52:19+02:00`), []byte("\x01"))
	f.Fuzz(func(t *testing.T, first, second, created, text []byte) {
		var s lineShape
		var resp api.ChatResponse
		var h holes
		lines := [][]byte{second}
		if msg, ok := scanLine(first, &resp, &h); ok && msg == "" && h.ce != 0 && h.me != 0 && h.ce <= h.ms {
			third := append(append([]byte(nil), first[:h.cs]...), '"')
			third = append(append(third, created...), '"')
			third = append(third, first[h.ce:h.ms]...)
			third = append(append(append(third, '"'), text...), '"')
			lines = append(lines, append(third, first[h.me:]...))
		}
		s.decode(first, &resp)
		for _, in := range lines {
			var want api.ChatResponse
			wantMsg, wantErr := decodeSlow(in, &want)
			got := resp
			msg, err := s.decode(in, &got)
			if (err != nil) != (wantErr != nil) || msg != wantMsg {
				t.Fatalf("%q after %q: msg %q err %v; encoding/json: msg %q err %v", in, first, msg, err, wantMsg, wantErr)
			}
			if err == nil && msg == "" && !reflect.DeepEqual(got, want) {
				t.Fatalf("%q after %q:\n got %#v\nwant %#v", in, first, got, want)
			}
		}
	})
}

// A stream's token lines take the shape (else the fuzz test above would
// pass on nothing): after the first, each next token line is decoded
// without a scan; the done line is scanned (a line of another shape
// teaches its shape: the next one is then scanned again).
func TestLineShapeTakesTokenLines(t *testing.T) {
	var s lineShape
	var resp api.ChatResponse
	for i, tc := range []struct {
		line string
		hit  bool
	}{
		{line("Hel", false), false},
		{line("lo", false), true},
		{strings.Replace(line(" \"there\"\n", false), "19.385406455-07:00", "20.5Z", 1), true},
		{line("", true), false},   // scanned, and learned
		{line("!", false), false}, // another shape than the done line's
		{line("?", false), true},
	} {
		in := []byte(strings.TrimSuffix(tc.line, "\n"))
		var want api.ChatResponse
		decodeSlow(in, &want)
		got := resp
		hit := s.match(in, &got)
		if hit != tc.hit {
			t.Fatalf("line %d: hit %v, want %v", i, hit, tc.hit)
		}
		if _, err := s.decode(in, &resp); err != nil || !reflect.DeepEqual(resp, want) {
			t.Fatalf("line %d: %v\n got %#v\nwant %#v", i, err, resp, want)
		}
	}
}

// A lineShape keeps no large line: one with more than maxShape bytes
// around its two values is decoded (scanned) but not learned.
func TestLineShapeKeepsNoLargeLine(t *testing.T) {
	big := []byte(`{"model":"` + strings.Repeat("m", maxShape) + `","created_at":"2024-08-04T08:52:19Z","message":{"content":"a"}}`)
	var s lineShape
	var resp api.ChatResponse
	if _, err := s.decode(big, &resp); err != nil || resp.Message.Content != "a" || s.known {
		t.Fatalf("content %q, err %v, learned %v", resp.Message.Content, err, s.known)
	}
	small := []byte(`{"model":"m","created_at":"2024-08-04T08:52:19Z","message":{"content":"a"}}`)
	if _, err := s.decode(small, &resp); err != nil || resp.Message.Content != "a" || !s.known {
		t.Fatalf("content %q, err %v, learned %v", resp.Message.Content, err, s.known)
	}
}
