package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// embeddingRequest is the body of POST /v1/embeddings as the gateway reads
// it: openaiwire.EmbeddingRequest's fields, with input raw so that a token
// array (which OpenAI takes and moltbot does not) is refused naming input.
type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat *string         `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
	// User is OpenAI's end-user id for abuse monitoring: taken, not used.
	User string `json:"user"`
}

// embeddings answers POST /v1/embeddings with OpenAI's embedding list:
// one vector an input, as JSON numbers or, with encoding_format base64,
// as base64 of their little-endian float32s (what OpenAI's SDKs ask for).
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	input, err := embedInput(req.Input)
	if err != nil {
		writeError(w, err)
		return
	}
	b64 := false
	if f := req.EncodingFormat; f != nil {
		switch *f {
		case "float":
		case "base64":
			b64 = true
		default:
			writeError(w, invalid("encoding_format", `encoding_format must be "float" or "base64", got %q`, *f))
			return
		}
	}
	dims := 0
	if req.Dimensions != nil {
		if *req.Dimensions < 1 {
			writeError(w, invalid("dimensions", "dimensions must be at least 1, got %d", *req.Dimensions))
			return
		}
		dims = *req.Dimensions
	}
	out, err := s.chat.Embed(r.Context(), principal(r), moltbot.EmbedRequest{Model: req.Model, Input: input, Dimensions: dims})
	if err != nil {
		writeError(w, err)
		return
	}
	writeEmbeddings(w, out, b64)
}

// embedInput reads input: a string, or an array of strings.
func embedInput(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return nil, invalid("input", "input is required: a string or an array of strings")
	case raw[0] == '"':
		var one string
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, invalid("input", "input: %v", err)
		}
		return []string{one}, nil
	case raw[0] == '[':
		var many []string
		if err := json.Unmarshal(raw, &many); err == nil {
			return many, nil
		}
		var tokens []json.Number
		if json.Unmarshal(raw, &tokens) == nil || json.Unmarshal(raw, &[][]json.Number{}) == nil {
			return nil, invalid("input", "input: token arrays are not supported; send the text, a string or an array of strings")
		}
	}
	return nil, invalid("input", "input: expected a string or an array of strings")
}

// writeEmbeddings writes the embedding list, handing w 32 KiB at a time: a
// batch of long vectors is megabytes as JSON numbers (2048 texts of 3072
// dimensions, some 75 MB), which encoding/json would hold whole before the
// first byte left. Numbers are written as encoding/json writes a float32
// (TestEmbeddingsBodyMatchesEncodingJSON); speed is not the reason, the
// shortest-decimal formatting is most of the cost either way
// (BenchmarkEmbeddingsBody: 0.41 ms and 4 allocations for 8 vectors of
// 768, encoding/json 0.48 ms and 7). base64 skips it: half the time end to
// end (BenchmarkEmbeddings).
func writeEmbeddings(w http.ResponseWriter, out *moltbot.Embeddings, b64 bool) {
	served := out.Served.String()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Moltbot-Provider", served)
	h.Set("X-Moltbot-Failovers", strconv.Itoa(out.Failovers))
	w.WriteHeader(http.StatusOK)
	bp := embedBufs.Get().(*[]byte)
	b := (*bp)[:0]
	var raw []byte
	b = append(b, `{"object":"list","data":[`...)
	for i, v := range out.Vectors {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		if b64 {
			raw = raw[:0]
			for _, f := range v {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for k, f := range v {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendFloat32(b, f)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
		if len(b) >= 32<<10 {
			if _, err := w.Write(b); err != nil {
				break // the client is gone
			}
			b = b[:0]
		}
	}
	b = append(b, `],"model":`...)
	b = jsonw.String(b, served)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(out.Usage.PromptTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(out.Usage.Total()), 10)
	b = append(b, "}}\n"...)
	w.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		embedBufs.Put(bp)
	}
}

// embedBufs hold embedding bodies while they are written (w.Write copies).
var embedBufs = sync.Pool{New: func() any { b := make([]byte, 0, 40<<10); return &b }}

// appendFloat32 appends f as encoding/json writes a float32: the shortest
// decimal that reads back as f, with an exponent only below 1e-6 or from
// 1e21 on, and a two-digit negative exponent without its leading zero.
func appendFloat32(b []byte, f float32) []byte {
	abs := math.Abs(float64(f))
	format := byte('f')
	if abs != 0 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, float64(f), format, -1, 32)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
