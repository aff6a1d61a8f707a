package kb

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/moltbot/moltbot"
)

// Embeddings, optional: with an embedding chain (models.embeddings) the
// store embeds every chunk in the background, after BM25 has made the
// base searchable, and a search with the query's vector fuses both
// rankings by reciprocal rank. Vectors are kept in the KV, by model and
// the chunk's text (vecPrefix + model + "/" + sha256), so a restart or a
// rebuild embeds only new chunks; a base's vectors all come from one
// model, and a query's vector is used only when the same model made it
// (a failover to another embedding model would compare vectors of
// different spaces). When the model that answers changes, every chunk is
// embedded again with it.

// vecPrefix starts the keys of vectors: '~' is no tenant id's first
// character, so they never meet a document's key.
const vecPrefix = "~v/"

// vecModelKey holds the model of the last vectors made.
const vecModelKey = vecPrefix + "model"

// embedBatch is how many chunks one embedding call takes.
const embedBatch = 32

// embedTimeout bounds the embedding of one base.
const embedTimeout = 5 * time.Minute

func vecKey(model, text string) string {
	h := sha256.Sum256([]byte(text))
	return vecPrefix + model + "/" + hex.EncodeToString(h[:16])
}

// encodeVec is a stored vector: uvarint dims, then the int8s.
func encodeVec(q []int8) []byte {
	b := binary.AppendUvarint(nil, uint64(len(q)))
	for _, x := range q {
		b = append(b, byte(x))
	}
	return b
}

func decodeVec(b []byte) ([]int8, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > 1<<14 || uint64(len(b)-k) != n {
		return nil, false
	}
	q := make([]int8, n)
	for i := range q {
		q[i] = int8(b[k+i])
	}
	return q, true
}

// errModelChanged: a batch was embedded by another model than the base's.
var errModelChanged = errors.New("kb: the embedding model changed during indexing")

// embedBase gives built its vectors: from the KV where they are (model
// is the last model that answered, "" before any), else from embed. It
// returns the base with vectors and the model that made them.
func (s *Store) embedBase(ctx context.Context, built *Base, model string) (*Base, string, error) {
	texts := built.texts()
	vecs := make([][]int8, len(texts))
	var missing []int
	for i, t := range texts {
		if model != "" {
			if b, ok, err := s.kv.Get(vecKey(model, t)); err == nil && ok {
				if q, ok := decodeVec(b); ok {
					vecs[i] = q
					continue
				}
			}
		}
		missing = append(missing, i)
	}
	for len(missing) > 0 {
		n := min(embedBatch, len(missing))
		batch := missing[:n]
		in := make([]string, n)
		for j, i := range batch {
			in[j] = texts[i]
		}
		res, err := s.embed(ctx, &moltbot.EmbedRequest{Input: in})
		if err != nil {
			return nil, model, err
		}
		if len(res.Vectors) != n {
			return nil, model, fmt.Errorf("kb: the embedding chain gave %d vectors for %d chunks", len(res.Vectors), n)
		}
		served := res.Served.String()
		if served != model {
			if model != "" && len(missing) < len(texts) {
				// Another model answers now: start over with it.
				clear(vecs)
				missing = missing[:0]
				for i := range texts {
					missing = append(missing, i)
				}
				model = served
				continue
			}
			model = served
		}
		for j, i := range batch {
			q := make([]int8, len(res.Vectors[j]))
			if quantize(q, res.Vectors[j]) {
				vecs[i] = q
				s.kv.Put(vecKey(model, texts[i]), encodeVec(q)) // a lost write is embedded again later
			}
		}
		missing = missing[n:]
	}
	dims := 0
	for _, q := range vecs {
		if q != nil {
			dims = len(q)
			break
		}
	}
	v := &Vectors{dims: dims, q: make([]int8, dims*len(vecs)), has: make([]bool, len(vecs))}
	for i, q := range vecs {
		if len(q) == dims && dims > 0 {
			copy(v.q[i*dims:], q)
			v.has[i] = true
		}
	}
	c := *built
	c.vec, c.Model = v, model
	return &c, model, nil
}

// Start runs the indexer until Close: every base that changed is indexed
// again in the background (a turn then rarely builds one itself: only
// when it searches before the indexer got there), and, with
// Config.Embed, gets its vectors.
//
// The indexer's goroutine starts with the first base that has documents
// (now, or at the first change): a node without knowledge bases runs none
// (an idle goroutine's stack is scanned at every collection, and the
// code it touches counts in the node's idle RSS).
func (s *Store) Start() {
	s.runMu.Lock()
	s.started = true
	s.runMu.Unlock()
	if !s.Empty() {
		s.run()
	}
}

// run starts the indexer's goroutine, once, after Start and before Close.
func (s *Store) run() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if !s.started || s.closed || s.stopEmbed != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopEmbed = cancel
	s.embedDone = make(chan struct{})
	go func() {
		defer close(s.embedDone)
		for {
			s.embedAll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
		}
	}()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops the embedder and waits for it.
func (s *Store) Close() {
	s.runMu.Lock()
	s.closed = true
	stop, done := s.stopEmbed, s.embedDone
	s.runMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// poke wakes the embedder (a base changed), starting it if it is not
// running yet.
func (s *Store) poke() {
	if s.wake == nil {
		return
	}
	s.run()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// embedAll indexes every base that changed and, with an embedder, embeds
// every base that has no vectors yet. An embedding failure (no model
// answers) leaves BM25 alone and is tried again at the next change, or
// after a minute.
func (s *Store) embedAll(ctx context.Context) {
	s.mu.Lock()
	var keys []string
	for k, b := range s.bases {
		if live(b) > 0 && (b.built == nil || (s.embed != nil && b.built.vec == nil)) {
			keys = append(keys, k)
		}
	}
	model := s.vecModel
	s.mu.Unlock()
	failed := false
	for _, k := range keys {
		if ctx.Err() != nil {
			return
		}
		space, name := splitKey(k)
		built, err := s.index(space, name)
		if err != nil || built == nil || s.embed == nil {
			continue
		}
		ectx, cancel := context.WithTimeout(ctx, embedTimeout)
		withVec, m, err := s.embedBase(ectx, built, model)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("knowledge base: embedding failed; searches use BM25 alone until it succeeds", "kb", name, "err", err)
			}
			failed = true
			continue
		}
		model = m
		s.mu.Lock()
		if s.vecModel != m {
			s.kv.Put(vecModelKey, []byte(m)) // read at Open: a restart finds its vectors
		}
		s.vecModel = m
		if b := s.bases[k]; b != nil && b.built == built {
			b.built = withVec
		}
		s.mu.Unlock()
	}
	if failed {
		go func() {
			select {
			case <-ctx.Done():
			case <-time.After(time.Minute):
				s.poke()
			}
		}()
	}
}
