package inference

import (
	"errors"
	"fmt"
	"io"
	"math"
)

// MaxEmbedDimensions bounds a vector's length: the largest embedding
// models give a few thousand; a server that answers more is broken.
const MaxEmbedDimensions = 65536

// EmbedBodyLimit bounds the answer to an embedding call of n inputs: a
// vector written as JSON numbers takes about 12 bytes a dimension, so
// 256 KiB an input is room for some 20,000 dimensions.
func EmbedBodyLimit(n int) int64 { return 64<<10 + int64(n)*256<<10 }

// ReadEmbedBody reads an embedding answer of at most limit bytes; a
// larger one, or a read that fails, is an *Error.
func ReadEmbedBody(provider string, r io.Reader, limit int64, sizeHint int64) ([]byte, error) {
	buf := make([]byte, 0, min(max(sizeHint, 4096), limit)+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, &Error{Kind: KindUnavailable, Provider: provider,
				Message: fmt.Sprintf("embeddings response larger than %d bytes", limit)}
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// CheckVectors checks an embedding answer for inputs texts: one vector per
// input, all of one length between 1 and MaxEmbedDimensions, every value
// finite (base64 can carry NaN). A server that answers otherwise is
// broken, and another model may do better: KindUnavailable.
func CheckVectors(provider string, vecs [][]float32, inputs int) error {
	if len(vecs) != inputs {
		return malformedEmbeddings(provider, "%d vectors for %d inputs", len(vecs), inputs)
	}
	for i, v := range vecs {
		if len(v) == 0 || len(v) > MaxEmbedDimensions {
			return malformedEmbeddings(provider, "vector %d has %d dimensions", i, len(v))
		}
		if len(v) != len(vecs[0]) {
			return malformedEmbeddings(provider, "vector %d has %d dimensions, vector 0 has %d", i, len(v), len(vecs[0]))
		}
		for _, f := range v {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return malformedEmbeddings(provider, "vector %d holds %v", i, f)
			}
		}
	}
	return nil
}

func malformedEmbeddings(provider, format string, args ...any) *Error {
	return &Error{Kind: KindUnavailable, Provider: provider, Message: "malformed embeddings response: " + fmt.Sprintf(format, args...)}
}

// MalformedEmbeddings is the *Error for an embedding answer that does not parse.
func MalformedEmbeddings(provider string, err error) *Error {
	return &Error{Kind: KindUnavailable, Provider: provider, Message: "malformed embeddings response: " + err.Error(), Err: err}
}

// SplitVectors cuts all, the vectors one after the other, at ends (the end
// of each vector in all), without copying: a response's vectors share one
// backing array, one allocation instead of one a vector.
func SplitVectors(all []float32, ends []int) [][]float32 {
	out := make([][]float32, len(ends))
	start := 0
	for i, e := range ends {
		out[i] = all[start:e:e]
		start = e
	}
	return out
}

// EstimateInputTokens approximates the tokens of embedding inputs, for a
// server that reports none (see EstimateTokens).
func EstimateInputTokens(input []string) int {
	n := 0
	for _, s := range input {
		n += 1 + (len(s)+3)/4
	}
	return n
}
