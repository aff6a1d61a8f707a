package openai

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonscan"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// Embed implements inference.Embedder: POST /embeddings with every input
// in one call, answered by an embedding list.
//
// Vectors are asked for in base64 (little-endian float32s), as OpenAI's
// own SDKs ask for them: a quarter of the bytes of JSON numbers and no
// number parsing. Every server that serves those SDKs takes it (OpenAI,
// vLLM, llama.cpp, Ollama's /v1); one that answers numbers anyway is read
// too.
func (c *Client) Embed(ctx context.Context, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	body := appendEmbedRequest(make([]byte, 0, 96+len(req.Model)+inference.EstimateInputTokens(req.Input)*5), req)
	resp, err := c.do(ctx, func() (*http.Request, error) {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/embeddings", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		hreq.Header["Content-Type"] = headerJSON
		hreq.Header["Accept"] = headerJSON
		return hreq, nil
	})
	if err != nil {
		return inference.EmbedResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		// DoWithKeys answers the error statuses; a 1xx or 3xx that reached
		// here is no answer either.
		return inference.EmbedResult{}, inference.FromStatus(c.name, resp.StatusCode, "", resp.Header)
	}
	b, err := inference.ReadEmbedBody(c.name, resp.Body, inference.EmbedBodyLimit(len(req.Input)), resp.ContentLength)
	if err != nil {
		return inference.EmbedResult{}, inference.Classify(ctx, c.name, err)
	}
	list, err := parseEmbeddingList(b)
	if err != nil {
		return inference.EmbedResult{}, inference.MalformedEmbeddings(c.name, err)
	}
	vecs, err := list.vectors(len(req.Input))
	if err != nil {
		return inference.EmbedResult{}, inference.MalformedEmbeddings(c.name, err)
	}
	if err := inference.CheckVectors(c.name, vecs, len(req.Input)); err != nil {
		return inference.EmbedResult{}, err
	}
	return inference.EmbedResult{Vectors: vecs, Model: list.model, Usage: list.usage}, nil
}

// appendEmbedRequest appends the body of a POST /embeddings:
// {"model","input":[...],"encoding_format":"base64"} and "dimensions"
// when asked.
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
	b = append(b, `],"encoding_format":"base64"`...)
	if req.Dimensions > 0 {
		b = append(b, `,"dimensions":`...)
		b = strconv.AppendInt(b, int64(req.Dimensions), 10)
	}
	return append(b, '}')
}

// embeddingList is what moltbot reads of an embedding list: the vectors one
// after the other in all, each item's bounds and index (-1: none given).
type embeddingList struct {
	model string
	usage moltbot.Usage
	all   []float32
	items []embeddingItem
}

type embeddingItem struct {
	index      int
	start, end int
}

// vectors puts the items in the order of their indexes (a server may list
// them in another), or in the order listed when none has one.
func (l *embeddingList) vectors(n int) ([][]float32, error) {
	if len(l.items) != n {
		return nil, fmt.Errorf("%d embeddings for %d inputs", len(l.items), n)
	}
	out := make([][]float32, n)
	for pos, it := range l.items {
		i := it.index
		if i < 0 {
			i = pos
		}
		if i >= n {
			return nil, fmt.Errorf("embedding index %d out of range (%d inputs)", it.index, n)
		}
		if out[i] != nil {
			return nil, fmt.Errorf("embedding index %d given twice", i)
		}
		out[i] = l.all[it.start:it.end:it.end]
	}
	return out, nil
}

// appendBase64 appends the little-endian float32s that s, standard
// base64, holds.
func appendBase64(dst []float32, s []byte) ([]float32, error) {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(raw, s)
	if err != nil {
		return dst, err
	}
	if n%4 != 0 {
		return dst, fmt.Errorf("a base64 embedding of %d bytes is not a whole number of float32s", n)
	}
	for k := 0; k < n; k += 4 {
		dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(raw[k:])))
	}
	return dst, nil
}

// parseEmbeddingList reads an embedding list: one of the usual shape in one
// pass (fastEmbeddingList), any other with encoding/json.
// FuzzEmbeddingListMatchesEncodingJSON holds the two equal.
func parseEmbeddingList(b []byte) (*embeddingList, error) {
	if l, ok := fastEmbeddingList(b); ok {
		return l, nil
	}
	return slowEmbeddingList(b)
}

var (
	listNames  = []string{"data", "model", "usage"}
	itemNames  = []string{"index", "embedding"}
	usageNames = []string{"prompt_tokens"}
)

func fastEmbeddingList(b []byte) (*embeddingList, bool) {
	l := &embeddingList{}
	i, ok := jsonscan.Object(b, jsonscan.WS(b, 0), 1, listNames, func(key []byte, vi int) (int, int, bool) {
		switch string(key) {
		case "data":
			next, ok := jsonscan.Array(b, vi, func(j int) (int, bool) {
				it := embeddingItem{index: -1, start: len(l.all)}
				next, ok := jsonscan.Object(b, j, 3, itemNames, func(key []byte, vi int) (int, int, bool) {
					switch string(key) {
					case "index":
						n, next, ok := jsonscan.Int(b, vi, jsonscan.IntBits)
						it.index = int(n)
						return 1, next, ok && n >= 0
					case "embedding":
						if vi < len(b) && b[vi] == '"' {
							s, e, ok := jsonscan.RawString(b, vi)
							if !ok || bytes.IndexByte(b[s:e], '\\') >= 0 {
								return 2, e, false
							}
							var err error
							l.all, err = appendBase64(l.all, b[s:e])
							return 2, e + 1, err == nil
						}
						var ok bool
						var next int
						l.all, next, ok = jsonscan.Float32s(b, vi, l.all)
						return 2, next, ok
					}
					return 0, vi, true
				})
				it.end = len(l.all)
				l.items = append(l.items, it)
				return next, ok
			})
			return 1, next, ok
		case "model":
			s, next, ok := jsonscan.String(b, vi, "")
			l.model = s
			return 2, next, ok
		case "usage":
			next, ok := jsonscan.Object(b, vi, 2, usageNames, func(key []byte, vi int) (int, int, bool) {
				if string(key) != "prompt_tokens" {
					return 0, vi, true
				}
				n, next, ok := jsonscan.Int(b, vi, jsonscan.IntBits)
				l.usage.PromptTokens = int(n)
				return 1, next, ok
			})
			return 4, next, ok
		}
		return 0, vi, true
	})
	if !ok || jsonscan.WS(b, i) != len(b) {
		return nil, false
	}
	return l, true
}

// slowList is the embedding list for encoding/json.
type slowList struct {
	Data []struct {
		Index     *int            `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Model string `json:"model"`
	Usage *struct {
		PromptTokens int `json:"prompt_tokens"`
	} `json:"usage"`
}

func slowEmbeddingList(b []byte) (*embeddingList, error) {
	var sl slowList
	if err := json.Unmarshal(b, &sl); err != nil {
		return nil, err
	}
	l := &embeddingList{model: sl.Model}
	if sl.Usage != nil {
		l.usage.PromptTokens = sl.Usage.PromptTokens
	}
	for k, d := range sl.Data {
		it := embeddingItem{index: -1, start: len(l.all)}
		if d.Index != nil {
			if *d.Index < 0 {
				return nil, fmt.Errorf("data[%d].index is %d", k, *d.Index)
			}
			it.index = *d.Index
		}
		switch {
		case len(d.Embedding) == 0:
			// No embedding: an empty vector, which CheckVectors refuses.
		case d.Embedding[0] == '"':
			var s string
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				return nil, err
			}
			var err error
			if l.all, err = appendBase64(l.all, []byte(s)); err != nil {
				return nil, fmt.Errorf("data[%d].embedding: %w", k, err)
			}
		default:
			var v []float32
			if err := json.Unmarshal(d.Embedding, &v); err != nil {
				return nil, fmt.Errorf("data[%d].embedding: %w", k, err)
			}
			l.all = append(l.all, v...)
		}
		it.end = len(l.all)
		l.items = append(l.items, it)
	}
	return l, nil
}
