package gateway

import (
	"net/http"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/openaiwire"
)

// chunkWriter writes OpenAI chat.completion.chunk events. Headers go out with
// the first chunk, once the serving model is known, so a failure before any
// token can still be a plain HTTP error.
type chunkWriter struct {
	w       http.ResponseWriter
	rc      http.ResponseController // by value: no allocation of its own
	buf     []byte
	hd      []byte // "data: " and the head every chunk of this stream starts with, made once
	id      string
	created int64
	served  string
	started bool
	usage   bool // the last chunk carries usage (stream_options.include_usage)
}

// newChunkWriter streams the chunks of completion id, created at unix time.
// release gives it back when the stream is done.
func newChunkWriter(w http.ResponseWriter, id string, created int64) *chunkWriter {
	cw := chunkWriters.Get().(*chunkWriter)
	*cw = chunkWriter{w: w, rc: *http.NewResponseController(w), buf: cw.buf[:0], hd: cw.hd[:0], id: id, created: created}
	return cw
}

// chunkWriters are pooled with their buffers: a burst of tokens leaves in
// one write of a few KB, which a fresh buffer would grow to every time.
var chunkWriters = sync.Pool{New: func() any { return &chunkWriter{buf: make([]byte, 0, 4096)} }}

// release returns s to the pool; s is not used after.
func (s *chunkWriter) release() {
	if cap(s.buf) > 64<<10 {
		return
	}
	*s = chunkWriter{buf: s.buf[:0], hd: s.hd[:0]}
	chunkWriters.Put(s)
}

// head appends the start of a chunk: its id, object, creation time and
// model (s.served: start sets it once, before the first chunk) are the
// same in every chunk of a stream, so they are encoded once.
func (s *chunkWriter) head() {
	if len(s.hd) == 0 {
		s.hd = append(s.hd, "data: "...)
		s.hd = openaiwire.AppendHead(s.hd, s.id, openaiwire.ObjectChunk, s.created, s.served, fingerprint)
	}
	s.buf = append(s.buf, s.hd...)
}

func (s *chunkWriter) start(served string, failovers int) {
	s.served = served
	s.started = true
	setStreamHeaders(s.w.Header(), hdrEventStream, served, failovers)
	s.w.WriteHeader(http.StatusOK)
}

// writeTimeout bounds each write to a client: one that stops reading cannot
// hold a model call (and its provider slot) forever.
const writeTimeout = 30 * time.Second

func (s *chunkWriter) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

// add appends one delta, a piece of content or of a tool call, to what
// the next flush sends.
func (s *chunkWriter) add(c moltbot.Chunk) {
	first := !s.started
	if first {
		s.start(c.Served.String(), c.Failovers)
	}
	s.head()
	if c.ToolCall != nil {
		s.buf = openaiwire.AppendToolCallDelta(s.buf, c.ToolCall, first)
	} else {
		s.buf = openaiwire.AppendDelta(s.buf, c.Content, first)
	}
	s.buf = append(s.buf, "\n\n"...)
}

// finish sends the finish chunk, the usage chunk when asked, and [DONE].
// A reply that streamed no token (an empty one, a replay of a stored
// reply, a stage that answered without streaming) goes out whole first:
// its text, then each tool call in one piece.
func (s *chunkWriter) finish(comp *moltbot.Completion, usage bool) error {
	if !s.started {
		s.start(comp.Served.String(), comp.Failovers)
		if comp.Content != "" || len(comp.ToolCalls) == 0 {
			s.head()
			s.buf = openaiwire.AppendDelta(s.buf, comp.Content, true)
			s.buf = append(s.buf, "\n\n"...)
		}
		for i, tc := range comp.ToolCalls {
			s.head()
			d := moltbot.ToolCallDelta{Index: i, ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments}
			s.buf = openaiwire.AppendToolCallDelta(s.buf, &d, i == 0 && comp.Content == "")
			s.buf = append(s.buf, "\n\n"...)
		}
	}
	s.head()
	s.buf = openaiwire.AppendFinish(s.buf, comp.FinishReason)
	s.buf = appendCitations(s.buf, comp.Citations)
	s.buf = append(s.buf, "\n\n"...)
	if usage {
		s.head()
		s.buf = openaiwire.AppendUsageChunk(s.buf, comp.Usage)
		s.buf = append(s.buf, "\n\n"...)
	}
	s.buf = append(s.buf, "data: [DONE]\n\n"...)
	err := writeLast(s.w, &s.rc, s.buf)
	s.buf = s.buf[:0]
	return err
}

// relay writes a turn's events to w as OpenAI chunks, on the request's
// goroutine: tokens and pieces of tool calls as they come (those that
// came together in one write),
// the finish chunk (and usage when asked) once the turn is done, or the
// error (a plain HTTP error before the first token, an error event after).
// A client that stops reading ends the turn: Close cancels it.
// relay releases cw when it returns.
func (s *Server) relay(w http.ResponseWriter, st *chat.Stream, cw *chunkWriter, usage bool) {
	cw.usage = usage
	relayStream(st, cw)
}

// streamWriter is a turn's stream in one API's shape: chunkWriter
// (OpenAI's SSE), messageStream (Anthropic's), ollamaWriter (NDJSON).
type streamWriter interface {
	put(ev moltbot.Event)      // a token or a piece of a tool call, appended
	flush() error              // what was appended, written and flushed
	end(r *moltbot.TurnResult) // the last event, written
	abort(err error)           // an error event once the stream began, else the API's HTTP error
	release()
}

// relayStream writes st's events with w on the request's goroutine:
// tokens wait in w's buffer while more are pending, so a burst leaves in
// one write, and a failed write (the client left) ends the turn.
func relayStream(st *chat.Stream, w streamWriter) {
	defer w.release()
	defer st.Close()
	for ev := range st.Events() {
		switch ev.Kind {
		case moltbot.EventToken, moltbot.EventToolCall:
			w.put(ev)
			if st.Pending() > 0 {
				continue // more to say: one write for the burst
			}
			if err := w.flush(); err != nil {
				return
			}
		case moltbot.EventDone:
			w.end(ev.Result)
			return
		case moltbot.EventError:
			w.abort(ev.Err)
			return
		}
	}
}

func (s *chunkWriter) put(ev moltbot.Event) {
	s.add(moltbot.Chunk{Content: ev.Text, ToolCall: ev.ToolCall, Served: ev.Served, Failovers: ev.Failovers})
}

func (s *chunkWriter) end(r *moltbot.TurnResult) {
	if r.Replayed && !s.started {
		s.w.Header().Set("X-Moltbot-Replayed", "true")
	}
	s.finish(r.Completion, s.usage)
}

func (s *chunkWriter) abort(err error) {
	if s.started {
		s.fail(err)
	} else {
		writeError(s.w, err)
	}
}

// fail ends a started stream with an OpenAI-style error event.
func (s *chunkWriter) fail(err error) {
	s.buf = append(s.buf, "data: "...)
	s.buf = appendError(s.buf, err)
	s.buf = append(s.buf, "\n\ndata: [DONE]\n\n"...)
	s.flush()
}
