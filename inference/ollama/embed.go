package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonscan"
	"github.com/moltbot/moltbot/internal/jsonw"
	"github.com/ollama/ollama/auth"
	"github.com/ollama/ollama/envconfig"
)

// embedPath is Ollama's batch embedding endpoint (since 0.3); the older
// /api/embeddings takes one prompt a call.
const embedPath = "/api/embed"

// Embed implements inference.Embedder: POST /api/embed with every input
// in one call, answered by {"embeddings": [[...], ...], "prompt_eval_count"}.
//
// Inputs are sent with "truncate": false: /v1/embeddings promises OpenAI's
// behaviour, where an input longer than the model's context is an error
// (400, returned to the client at once), not the vector of its beginning;
// with Ollama's default a long text would silently embed as its first
// part, and a fallback model of another server would refuse it instead.
func (c *Client) Embed(ctx context.Context, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	body := appendEmbedRequest(make([]byte, 0, 64+len(req.Model)+inference.EstimateInputTokens(req.Input)*5), req)
	hreq, err := c.newPost(ctx, embedPath, body)
	if err != nil {
		return inference.EmbedResult{}, err
	}
	hreq.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return inference.EmbedResult{}, inference.Classify(ctx, c.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return inference.EmbedResult{}, c.statusError(resp)
	}
	b, err := inference.ReadEmbedBody(c.name, resp.Body, inference.EmbedBodyLimit(len(req.Input)), resp.ContentLength)
	if err != nil {
		return inference.EmbedResult{}, inference.Classify(ctx, c.name, err)
	}
	res, err := parseEmbedResponse(b)
	if err != nil {
		return inference.EmbedResult{}, inference.MalformedEmbeddings(c.name, err)
	}
	if err := inference.CheckVectors(c.name, res.Vectors, len(req.Input)); err != nil {
		return inference.EmbedResult{}, err
	}
	return res, nil
}

// appendEmbedRequest appends the body of an /api/embed request:
// {"model","input":[...],"truncate":false} and "dimensions" when asked
// (the fields of api.EmbedRequest; TestEmbedRequestMatchesAPI compares).
func appendEmbedRequest(b []byte, req *inference.EmbedRequest) []byte {
	b = append(b, `{"model":`...)
	b = jsonw.String(b, req.Model)
	b = append(b, `,"input":[`...)
	for i, s := range req.Input {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonw.String(b, s)
	}
	b = append(b, `],"truncate":false`...)
	if req.Dimensions > 0 {
		b = append(b, `,"dimensions":`...)
		b = strconv.AppendInt(b, int64(req.Dimensions), 10)
	}
	return append(b, '}')
}

// newPost builds a POST of body to path with api.Client's headers, signed
// as newRequest signs /api/chat (OLLAMA_AUTH, or ollama.com).
func (c *Client) newPost(ctx context.Context, path string, body []byte) (*http.Request, error) {
	u := c.base.JoinPath(path)
	var token string
	if envconfig.UseAuth() || c.base.Hostname() == "ollama.com" {
		now := strconv.FormatInt(time.Now().Unix(), 10)
		var err error
		if token, err = auth.Sign(ctx, []byte("POST,"+path+"?ts="+now)); err != nil {
			return nil, &inference.Error{Kind: inference.KindAuth, Provider: c.name, Message: "signing the request: " + err.Error(), Err: err}
		}
		q := u.Query()
		q.Set("ts", now)
		u.RawQuery = q.Encode()
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, &inference.Error{Kind: inference.KindBadRequest, Provider: c.name, Message: err.Error(), Err: err}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", userAgent)
	if token != "" {
		hreq.Header.Set("Authorization", token)
	}
	return hreq, nil
}

// embedResponse is what moltbot reads of api.EmbedResponse, for the
// answers the one-pass reader leaves to encoding/json.
type embedResponse struct {
	Model           string      `json:"model"`
	Embeddings      [][]float32 `json:"embeddings"`
	PromptEvalCount int         `json:"prompt_eval_count"`
}

var embedNames = []string{"model", "embeddings", "prompt_eval_count"}

// parseEmbedResponse reads an /api/embed answer: one of the shape Ollama
// writes in one pass (fastEmbedResponse), any other with encoding/json.
// FuzzEmbedResponseMatchesEncodingJSON holds the two equal.
func parseEmbedResponse(b []byte) (inference.EmbedResult, error) {
	if res, ok := fastEmbedResponse(b); ok {
		return res, nil
	}
	var r embedResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return inference.EmbedResult{}, err
	}
	return inference.EmbedResult{Vectors: r.Embeddings, Model: r.Model, Usage: moltbot.Usage{PromptTokens: r.PromptEvalCount}}, nil
}

// fastEmbedResponse reads the answer in one pass, its vectors into one
// backing array; ok false hands it to encoding/json.
func fastEmbedResponse(b []byte) (inference.EmbedResult, bool) {
	var res inference.EmbedResult
	var all []float32
	var ends []int
	vecs := false
	i, ok := jsonscan.Object(b, jsonscan.WS(b, 0), 1, embedNames, func(key []byte, vi int) (int, int, bool) {
		switch string(key) {
		case "model":
			s, next, ok := jsonscan.String(b, vi, "")
			res.Model = s
			return 1, next, ok
		case "embeddings":
			next, ok := jsonscan.Array(b, vi, func(j int) (int, bool) {
				var next int
				var ok bool
				all, next, ok = jsonscan.Float32s(b, j, all)
				ends = append(ends, len(all))
				return next, ok
			})
			vecs = ok
			return 2, next, ok
		case "prompt_eval_count":
			n, next, ok := jsonscan.Int(b, vi, jsonscan.IntBits)
			res.Usage.PromptTokens = int(n)
			return 4, next, ok
		}
		return 0, vi, true
	})
	if !ok || jsonscan.WS(b, i) != len(b) {
		return inference.EmbedResult{}, false
	}
	if vecs {
		res.Vectors = inference.SplitVectors(all, ends)
	}
	return res, true
}
