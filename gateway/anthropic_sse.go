package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// messageStream writes a reply as the Messages API's server-sent events,
// in its order: message_start (the message, its content empty),
// then each content block, one after the other: content_block_start (a
// text block, or a tool_use block with its id, name and input {}), its
// content_block_delta events (text_delta, or input_json_delta with a
// piece of the input's JSON), content_block_stop; a ping after the first
// block's start, as the API sends it; then message_delta (stop_reason,
// and usage: the output tokens and, as the domain knows them only then,
// the input tokens), message_stop. An error after the headers is an
// error event, last.
//
// Headers go out with the first token, once the serving model is known,
// so a failure before any token is still a plain HTTP error. Events are
// appended to a reused buffer (no encoding/json per token) and written in
// bursts, as chunkWriter writes OpenAI's.
type messageStream struct {
	s       *Server
	w       http.ResponseWriter
	rc      http.ResponseController // by value: no allocation of its own
	buf     []byte
	id      string
	served  string
	started bool
	blocks  int   // content blocks started
	open    int   // the block open now, -1 when none is
	text    bool  // the open block is text
	calls   []int // the block of each tool call, by its index in the reply
}

// newMessageStream streams message id's events to w; relayMessages
// releases it.
func newMessageStream(s *Server, w http.ResponseWriter, id string) *messageStream {
	ms := messageStreams.Get().(*messageStream)
	*ms = messageStream{s: s, w: w, rc: *http.NewResponseController(w), buf: ms.buf[:0], id: id, open: -1, calls: ms.calls[:0]}
	return ms
}

// messageStreams are pooled with their buffers, as chunkWriters are.
var messageStreams = sync.Pool{New: func() any { return &messageStream{buf: make([]byte, 0, 4096)} }}

func (m *messageStream) release() {
	if cap(m.buf) > 64<<10 {
		return
	}
	*m = messageStream{buf: m.buf[:0], calls: m.calls[:0]}
	messageStreams.Put(m)
}

// event appends the start of an event named name: its data follows.
func (m *messageStream) event(name string) {
	m.buf = append(m.buf, "event: "...)
	m.buf = append(m.buf, name...)
	m.buf = append(m.buf, "\ndata: "...)
}

// start sends the headers and appends message_start.
func (m *messageStream) start(served string, failovers int) {
	m.served, m.started = served, true
	setStreamHeaders(m.w.Header(), hdrEventStream, served, failovers)
	m.w.WriteHeader(http.StatusOK)
	m.event("message_start")
	m.buf = append(m.buf, `{"type":"message_start","message":{"id":`...)
	m.buf = jsonw.String(m.buf, m.id)
	m.buf = append(m.buf, `,"type":"message","role":"assistant","model":`...)
	m.buf = jsonw.String(m.buf, served)
	m.buf = append(m.buf, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}`+"\n\n"...)
}

// stop appends content_block_stop of the open block, if one is.
func (m *messageStream) stop() {
	if m.open < 0 {
		return
	}
	m.event("content_block_stop")
	m.buf = append(m.buf, `{"type":"content_block_stop","index":`...)
	m.buf = strconv.AppendInt(m.buf, int64(m.open), 10)
	m.buf = append(m.buf, "}\n\n"...)
	m.open = -1
}

// begin stops the open block and appends the start of the next one, of
// the content block whose JSON follows; the caller appends it and "}}".
func (m *messageStream) begin() int {
	m.stop()
	i := m.blocks
	m.blocks++
	m.open = i
	m.event("content_block_start")
	m.buf = append(m.buf, `{"type":"content_block_start","index":`...)
	m.buf = strconv.AppendInt(m.buf, int64(i), 10)
	m.buf = append(m.buf, `,"content_block":`...)
	return i
}

// begun ends a content_block_start; after the first, a ping.
func (m *messageStream) begun(i int) {
	m.buf = append(m.buf, "}\n\n"...)
	if i == 0 {
		m.event("ping")
		m.buf = append(m.buf, `{"type":"ping"}`+"\n\n"...)
	}
}

// delta appends the start of a content_block_delta of block i; the
// caller appends the delta's JSON and "}}".
func (m *messageStream) delta(i int) {
	m.event("content_block_delta")
	m.buf = append(m.buf, `{"type":"content_block_delta","index":`...)
	m.buf = strconv.AppendInt(m.buf, int64(i), 10)
	m.buf = append(m.buf, `,"delta":`...)
}

// addText appends a piece of the reply's text, in the open text block or
// a new one.
func (m *messageStream) addText(s string) {
	if s == "" {
		return
	}
	if m.open < 0 || !m.text {
		i := m.begin()
		m.buf = append(m.buf, `{"type":"text","text":""}`...)
		m.begun(i)
		m.text = true
	}
	m.delta(m.open)
	m.buf = append(m.buf, `{"type":"text_delta","text":`...)
	m.buf = jsonw.String(m.buf, s)
	m.buf = append(m.buf, "}}\n\n"...)
}

// addCall appends a piece of a tool call: its first starts the call's
// tool_use block, its arguments are input_json_delta events of that
// block. Providers send a call's pieces together, so its block is the
// open one; a piece of a call whose block was stopped still names that
// block (Anthropic's clients put it where its index says).
func (m *messageStream) addCall(d *moltbot.ToolCallDelta) {
	for len(m.calls) <= d.Index {
		m.calls = append(m.calls, -1)
	}
	i := m.calls[d.Index]
	if i < 0 {
		i = m.begin()
		m.calls[d.Index] = i
		m.text = false
		m.buf = append(m.buf, `{"type":"tool_use","id":`...)
		m.buf = jsonw.String(m.buf, m.s.toolUseID(d.ID))
		m.buf = append(m.buf, `,"name":`...)
		m.buf = jsonw.String(m.buf, d.Name)
		m.buf = append(m.buf, `,"input":{}}`...)
		m.begun(i)
	}
	if d.Arguments == "" {
		return
	}
	m.delta(i)
	m.buf = append(m.buf, `{"type":"input_json_delta","partial_json":`...)
	m.buf = jsonw.String(m.buf, d.Arguments)
	m.buf = append(m.buf, "}}\n\n"...)
}

func (m *messageStream) flush() error {
	_ = m.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := m.w.Write(m.buf)
	m.buf = m.buf[:0]
	if err != nil {
		return err
	}
	return m.rc.Flush()
}

// finish stops the open block and sends message_delta and message_stop.
// A reply that streamed nothing (an empty one, a stage that answered
// without streaming) goes out whole first: its text, then each call in
// one piece.
func (m *messageStream) finish(comp *moltbot.Completion) error {
	if !m.started {
		m.start(comp.Served.String(), comp.Failovers)
		m.addText(comp.Content)
		for i := range comp.ToolCalls {
			tc := &comp.ToolCalls[i]
			m.addCall(&moltbot.ToolCallDelta{Index: i, ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments})
		}
	}
	m.stop()
	m.event("message_delta")
	m.buf = append(m.buf, `{"type":"message_delta","delta":{"stop_reason":"`...)
	m.buf = append(m.buf, stopReason(comp)...)
	m.buf = append(m.buf, `","stop_sequence":null},"usage":`...)
	m.buf = appendAnthropicUsage(m.buf, comp.Usage, true)
	m.buf = append(m.buf, "}\n\n"...)
	m.event("message_stop")
	m.buf = append(m.buf, `{"type":"message_stop"}`+"\n\n"...)
	err := writeLast(m.w, &m.rc, m.buf)
	m.buf = m.buf[:0]
	return err
}

// fail ends a started stream with an error event.
func (m *messageStream) fail(err error) {
	m.event("error")
	m.buf = appendAnthropicError(m.buf, err, m.w.Header().Get("X-Request-Id"))
	m.buf = append(m.buf, "\n\n"...)
	m.flush()
}

// relayMessages writes a turn's events to w as the Messages API's events,
// on the request's goroutine: text and pieces of tool calls as they come
// (those that came together in one write), the end once the turn is
// done, or the error (a plain HTTP error before the first token, an error
// event after). A client that stops reading ends the turn: Close cancels
// it. relayMessages releases m when it returns.
func (m *messageStream) put(ev moltbot.Event) {
	if !m.started {
		m.start(ev.Served.String(), ev.Failovers)
	}
	if ev.ToolCall != nil {
		m.addCall(ev.ToolCall)
	} else {
		m.addText(ev.Text)
	}
}

func (m *messageStream) end(r *moltbot.TurnResult) { m.finish(r.Completion) }

func (m *messageStream) abort(err error) {
	if m.started {
		m.fail(err)
	} else {
		writeAnthropicError(m.w, err)
	}
}
