package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// ollamaWriter writes the answers of /api/chat and /api/generate as Ollama
// does: a stream of NDJSON lines (api.ChatResponse, api.GenerateResponse),
// the last with done true, the reason and the metrics; or, when the client
// asked for no stream, one object. Lines are appended by hand into a
// reused buffer (no encoding/json per token). Headers go out with the
// first line, once the serving model is known, so a failure before any
// token is still a plain HTTP error.
type ollamaWriter struct {
	// inUse and space: /api/ps records the model that served, at the end.
	inUse    *inUse
	space    string
	w        http.ResponseWriter
	rc       http.ResponseController // by value: no allocation of its own
	buf      []byte
	model    string // as the client named it: Ollama answers with the request's name
	generate bool   // /api/generate: "response" instead of "message"
	started  bool
	// t0 is when the request came, tCall when the model was asked: the
	// durations of the done line are measured from them.
	t0, tCall time.Time
}

var ollamaWriters = sync.Pool{New: func() any { return &ollamaWriter{buf: make([]byte, 0, 4096)} }}

func newOllamaWriter(w http.ResponseWriter, model string, generate bool, t0, tCall time.Time) *ollamaWriter {
	ow := ollamaWriters.Get().(*ollamaWriter)
	*ow = ollamaWriter{w: w, rc: *http.NewResponseController(w), buf: ow.buf[:0], model: model, generate: generate, t0: t0, tCall: tCall}
	return ow
}

// release returns ow to the pool; ow is not used after.
// put appends a token. Tool-call pieces are not written as they come:
// Ollama's clients take whole calls, which the done line holds.
func (ow *ollamaWriter) put(ev moltbot.Event) {
	if ev.Kind == moltbot.EventToken {
		ow.add(ev.Text, ev.Served, ev.Failovers)
	}
}

func (ow *ollamaWriter) end(r *moltbot.TurnResult) {
	if ow.inUse != nil {
		ow.inUse.used(ow.space, r.Completion.Served.String(), time.Now())
	}
	ow.finish(r.Completion)
}

func (ow *ollamaWriter) abort(err error) {
	if ow.started {
		ow.fail(err)
	} else {
		writeOllamaError(ow.w, err)
	}
}

func (ow *ollamaWriter) release() {
	if cap(ow.buf) > 64<<10 {
		return
	}
	*ow = ollamaWriter{buf: ow.buf[:0]}
	ollamaWriters.Put(ow)
}

func (ow *ollamaWriter) start(served string, failovers int, contentType string) {
	ow.started = true
	h := ow.w.Header()
	h.Set("Content-Type", contentType)
	if served != "" {
		h.Set("X-Moltbot-Provider", served)
		h.Set("X-Moltbot-Failovers", strconv.Itoa(failovers))
	}
	if contentType == ndjson {
		h["X-Accel-Buffering"] = hdrNo
		h["Transfer-Encoding"] = hdrChunked // a stream stays chunked (setStreamHeaders)
	}
	ow.w.WriteHeader(http.StatusOK)
}

const ndjson = "application/x-ndjson"

// head appends the start of a line: {"model":...,"created_at":"...",
func (ow *ollamaWriter) head() {
	ow.buf = append(ow.buf, `{"model":`...)
	ow.buf = jsonw.String(ow.buf, ow.model)
	ow.buf = append(ow.buf, `,"created_at":"`...)
	ow.buf = time.Now().UTC().AppendFormat(ow.buf, time.RFC3339Nano)
	ow.buf = append(ow.buf, `",`...)
}

// text appends a line's text: the message, or the response.
func (ow *ollamaWriter) text(s string) {
	if ow.generate {
		ow.buf = append(ow.buf, `"response":`...)
		ow.buf = jsonw.String(ow.buf, s)
		ow.buf = append(ow.buf, ',')
		return
	}
	ow.buf = append(ow.buf, `"message":{"role":"assistant","content":`...)
	ow.buf = jsonw.String(ow.buf, s)
	ow.buf = append(ow.buf, `},`...)
}

// add appends one token's line to what the next flush sends.
func (ow *ollamaWriter) add(tok string, served moltbot.ModelRef, failovers int) {
	if !ow.started {
		ow.start(served.String(), failovers, ndjson)
	}
	ow.head()
	ow.text(tok)
	ow.buf = append(ow.buf, `"done":false}`+"\n"...)
}

func (ow *ollamaWriter) flush() error {
	_ = ow.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := ow.w.Write(ow.buf)
	ow.buf = ow.buf[:0]
	if err != nil {
		return err
	}
	return ow.rc.Flush()
}

// toolCalls appends a message that holds the reply's tool calls, as
// Ollama writes them: each whole, its arguments an object.
func (ow *ollamaWriter) toolCalls(content string, calls []moltbot.ToolCall) {
	ow.buf = append(ow.buf, `"message":{"role":"assistant","content":`...)
	ow.buf = jsonw.String(ow.buf, content)
	ow.buf = append(ow.buf, `,"tool_calls":[`...)
	for i := range calls {
		c := &calls[i]
		if i > 0 {
			ow.buf = append(ow.buf, ',')
		}
		ow.buf = append(ow.buf, `{"id":`...)
		ow.buf = jsonw.String(ow.buf, c.ID)
		ow.buf = append(ow.buf, `,"function":{"index":`...)
		ow.buf = strconv.AppendInt(ow.buf, int64(i), 10)
		ow.buf = append(ow.buf, `,"name":`...)
		ow.buf = jsonw.String(ow.buf, c.Name)
		ow.buf = append(ow.buf, `,"arguments":`...)
		// Ollama's arguments are an object. A model's that are not one
		// (broken JSON) cannot be said in Ollama's shape: they are empty.
		if jsonObject(c.Arguments) {
			ow.buf = append(ow.buf, c.Arguments...)
		} else {
			ow.buf = append(ow.buf, "{}"...)
		}
		ow.buf = append(ow.buf, `}}`...)
	}
	ow.buf = append(ow.buf, `]},`...)
}

// done appends the end of the last line: the reason and the metrics.
//
// The durations are measured at the edge, in nanoseconds:
// total_duration from the request's arrival to its end; load_duration
// from its arrival to the model's call (reading, decoding and admitting
// the request: moltbot's providers load models ahead); prompt_eval_duration
// the call's time to its first token (queueing, a cold model's load, the
// prompt); eval_duration the rest. The counts are the provider's.
func (ow *ollamaWriter) done(reason string, comp *moltbot.Completion) {
	total := time.Since(ow.t0)
	load := ow.tCall.Sub(ow.t0)
	var prompt, eval time.Duration
	var u moltbot.Usage
	if comp != nil {
		prompt, u = comp.TTFT, comp.Usage
		eval = max(total-load-prompt, 0)
	}
	ow.buf = append(ow.buf, `"done":true,"done_reason":`...)
	ow.buf = jsonw.String(ow.buf, reason)
	for _, f := range [...]struct {
		key string
		v   int64
	}{{`,"total_duration":`, int64(total)}, {`,"load_duration":`, int64(load)}, {`,"prompt_eval_count":`, int64(u.PromptTokens)},
		{`,"prompt_eval_duration":`, int64(prompt)}, {`,"eval_count":`, int64(u.CompletionTokens)}, {`,"eval_duration":`, int64(eval)}} {
		ow.buf = append(ow.buf, f.key...)
		ow.buf = strconv.AppendInt(ow.buf, f.v, 10)
	}
	ow.buf = append(ow.buf, "}\n"...)
}

// doneReason is a finish reason in Ollama's words: "length" or "stop" (a
// reply that stopped for its tool calls is "stop", as Ollama says it).
func doneReason(finish string) string {
	if finish == "length" {
		return "length"
	}
	return "stop"
}

// finish writes the tool calls (if any) and the done line. A reply that
// streamed no token (an empty one, a stage that answered whole) goes out
// whole first.
func (ow *ollamaWriter) finish(comp *moltbot.Completion) error {
	if !ow.started {
		ow.start(comp.Served.String(), comp.Failovers, ndjson)
		if comp.Content != "" {
			ow.head()
			ow.text(comp.Content)
			ow.buf = append(ow.buf, `"done":false}`+"\n"...)
		}
	}
	if len(comp.ToolCalls) > 0 && !ow.generate {
		ow.head()
		ow.toolCalls("", comp.ToolCalls)
		ow.buf = append(ow.buf, `"done":false}`+"\n"...)
	}
	ow.head()
	ow.text("")
	ow.done(doneReason(comp.FinishReason), comp)
	err := writeLast(ow.w, &ow.rc, ow.buf)
	ow.buf = ow.buf[:0]
	return err
}

// whole writes a reply as one object (a request with "stream": false).
func (ow *ollamaWriter) whole(comp *moltbot.Completion) error {
	ow.start(comp.Served.String(), comp.Failovers, "application/json; charset=utf-8")
	ow.head()
	if len(comp.ToolCalls) > 0 && !ow.generate {
		ow.toolCalls(comp.Content, comp.ToolCalls)
	} else {
		ow.text(comp.Content)
	}
	ow.done(doneReason(comp.FinishReason), comp)
	return ow.flush()
}

// loaded writes Ollama's answer to a request with nothing to say: the
// model is loaded (reason "load"), or unloaded ("unload").
func (ow *ollamaWriter) loaded(reason string) error {
	ow.start("", 0, "application/json; charset=utf-8")
	ow.head()
	ow.text("")
	ow.buf = append(ow.buf, `"done":true,"done_reason":`...)
	ow.buf = jsonw.String(ow.buf, reason)
	ow.buf = append(ow.buf, "}\n"...)
	return ow.flush()
}

// fail ends a started stream with an error line, as Ollama does: its
// clients read {"error": ...} as the stream's error.
func (ow *ollamaWriter) fail(err error) {
	ow.buf = append(ow.buf, `{"error":`...)
	ow.buf = jsonw.String(ow.buf, moltbot.ErrorMessage(err))
	ow.buf = append(ow.buf, "}\n"...)
	ow.flush()
}
