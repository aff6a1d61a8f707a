package ollama

import (
	"math"
	"strconv"
	"time"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// appendRequest appends the JSON body of a streamed /api/chat request: the
// bytes json.Marshal writes for the api.ChatRequest moltbot used to send
// (TestRequestMatchesAPIChatRequest and FuzzRequest compare them), without
// reflection or the options map. moltbot's options map to Ollama's:
// max_tokens -> num_predict, temperature, top_p, stop, seed,
// presence_penalty, frequency_penalty. Messages with parts, tools and a
// response format (parts.go) go through api's own types; the error is a
// field of theirs that does not fit them, named.
func appendRequest(b []byte, req *inference.Request, keepAlive *time.Duration) ([]byte, error) {
	if plain(req.Messages) {
		b = inference.AppendChatHead(b, req)
	} else {
		var err error
		if b, err = appendHead(b, req); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"stream":true`...)
	b, err := appendFormatAndTools(b, req, keepAlive)
	if err != nil {
		return nil, err
	}
	b = append(b, `,"options":{`...)
	// json.Marshal sorts a map's keys; so do we.
	n := 0
	key := func(k string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `":`...)
	}
	if req.FrequencyPenalty != nil {
		key("frequency_penalty")
		b = appendFloat(b, *req.FrequencyPenalty)
	}
	if req.MaxTokens > 0 {
		key("num_predict")
		b = strconv.AppendInt(b, int64(req.MaxTokens), 10)
	}
	if req.PresencePenalty != nil {
		key("presence_penalty")
		b = appendFloat(b, *req.PresencePenalty)
	}
	if req.Seed != nil {
		key("seed")
		b = strconv.AppendInt(b, *req.Seed, 10)
	}
	if len(req.Stop) > 0 {
		key("stop")
		b = append(b, '[')
		for i, s := range req.Stop {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.String(b, s)
		}
		b = append(b, ']')
	}
	if req.Temperature != nil {
		key("temperature")
		b = appendFloat(b, *req.Temperature)
	}
	if req.TopP != nil {
		key("top_p")
		b = appendFloat(b, *req.TopP)
	}
	return append(b, "}}"...), nil
}

// checkRequest refuses what JSON cannot carry (json.Marshal fails on it).
func checkRequest(provider string, req *inference.Request) error {
	if v := req.Temperature; v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
		return inference.Errorf(inference.KindBadRequest, provider, "temperature is not a finite number")
	}
	if v := req.TopP; v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
		return inference.Errorf(inference.KindBadRequest, provider, "top_p is not a finite number")
	}
	if v := req.PresencePenalty; v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
		return inference.Errorf(inference.KindBadRequest, provider, "presence_penalty is not a finite number")
	}
	if v := req.FrequencyPenalty; v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
		return inference.Errorf(inference.KindBadRequest, provider, "frequency_penalty is not a finite number")
	}
	return nil
}

// appendFloat writes f as encoding/json writes a float64.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
