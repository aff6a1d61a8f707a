package kb

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// The knowledge-base stage: a stage before the model (actors.BeforeModel)
// that runs for a turn whose bot names knowledge bases
// (Bot.KnowledgeBases), or, for a turn of no bot, when StageConfig.Default
// names some. It searches them with the turn's last user message and
// writes the notes the hand-off stage reads:
//
//	kb.hit    "true" or "false"
//	kb.score  the best match's coverage, "0.00" to "1.00"
//
// On a hit (coverage at or over the threshold) it adds the chunks found
// to the model's context, numbered ([1], [2], ...) in a system message,
// and sets them as the turn's citations (the reply carries them). On a
// miss it answers StageConfig.NoAnswer without the model, or, with
// OnMiss "model", lets the model answer without sources. A turn whose
// knowledge bases hold no document (in its tenant) passes, with no note.

// Notes the stage writes.
const (
	NoteHit   = "kb.hit"
	NoteScore = "kb.score"
)

// What the stage does on a miss.
const (
	MissAnswer = "answer" // answer NoAnswer, without the model (the default)
	MissModel  = "model"  // let the model answer with no sources
)

// DefaultNoAnswer is the text of a miss when none is configured.
const DefaultNoAnswer = "Sorry, I could not find an answer to that in our documentation. 抱歉，资料库中没有找到相关答案。"

// StageConfig configures the stage.
type StageConfig struct {
	// Default names the knowledge bases a turn of no bot searches (nil:
	// such turns search none).
	Default []string
	// K is how many chunks go into the context (0: 4).
	K int
	// Threshold is the coverage below which a search is a miss (0:
	// DefaultThreshold).
	Threshold float64
	// OnMiss is MissAnswer ("" too) or MissModel.
	OnMiss string
	// NoAnswer is the reply of a miss with MissAnswer ("":
	// DefaultNoAnswer).
	NoAnswer string
	// MaxContextBytes bounds the sources' text in the context (0: 8 KiB).
	MaxContextBytes int
	// MinCosine, when over 0, makes a search a hit on its vectors alone:
	// the best chunk's cosine with the question at or over it (when the
	// node embeds; BM25's coverage decides otherwise).
	MinCosine float64
}

// Stage is the knowledge-base stage over a Store.
type Stage struct {
	store *Store
	cfg   atomic.Pointer[StageConfig] // SetConfig: swapped on a reload
	// botsSearch: some bot names a knowledge base (SetBotsSearch).
	botsSearch atomic.Bool
}

// SetBotsSearch says whether some bot of the config names a knowledge
// base (at start and on every reload): with none, and no default for
// turns of no bot, no turn can search and the stage idles.
func (st *Stage) SetBotsSearch(v bool) { st.botsSearch.Store(v) }

// NewStage returns the stage.
func NewStage(store *Store, cfg StageConfig) *Stage {
	st := &Stage{store: store}
	st.SetConfig(cfg)
	st.botsSearch.Store(true)
	return st
}

// SetConfig puts cfg in place (a reload of skills.kb): turns that begin
// from now on use it.
func (st *Stage) SetConfig(cfg StageConfig) {
	if cfg.K <= 0 {
		cfg.K = 4
	}
	if cfg.K > moltbot.MaxCitations {
		cfg.K = moltbot.MaxCitations
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.NoAnswer == "" {
		cfg.NoAnswer = DefaultNoAnswer
	}
	if cfg.MaxContextBytes <= 0 {
		cfg.MaxContextBytes = 8 << 10
	}
	st.cfg.Store(&cfg)
}

// Threshold is the coverage below which a search is "no answer".
func (st *Stage) Threshold() float64 { return st.cfg.Load().Threshold }

// Idle reports whether the stage has nothing to do (actors.Idler; a turn
// then passes it by, and a pipeline of idle stages is the router alone):
// no document on this node, or no turn that may search (no default, and
// no bot naming a knowledge base; NewStage assumes some bot does until
// SetBotsSearch says otherwise).
func (st *Stage) Idle() bool {
	return st.store.Empty() || (len(st.cfg.Load().Default) == 0 && !st.botsSearch.Load())
}

// bases is what t searches: its bot's knowledge bases, or the default
// for a turn of no bot.
func (st *Stage) bases(t *moltbot.Turn) []string {
	if t.Bot != nil {
		return t.Bot.KnowledgeBases
	}
	return st.cfg.Load().Default
}

// maxQuery bounds the text searched (bytes): the start of a longer message.
const maxQuery = 4 << 10

// BeforeModel searches the turn's knowledge bases (see the comment above).
func (st *Stage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	cfg := st.cfg.Load() // one config for the whole turn
	kbs := st.bases(t)
	if len(kbs) == 0 || t.Tenant == "" {
		return nil, nil
	}
	q := moltbot.LastUserText(t.Messages)
	if strings.TrimSpace(q) == "" {
		return nil, nil
	}
	if len(q) > maxQuery {
		q = truncate(q, maxQuery)
	}
	query := Query{Text: q, K: cfg.K}
	if m := st.store.VectorModel(); m != "" && t.Embed != nil {
		// The question's vector, when the model of the chunks' answers;
		// else BM25 alone (an embedding failure is no failed turn).
		if res, err := t.Embed(ctx, &moltbot.EmbedRequest{Input: []string{q}}); err == nil && len(res.Vectors) == 1 && res.Served.String() == m {
			query.Vector, query.VectorModel = res.Vectors[0], m
		}
	}
	found, a, err := st.store.Search(t.Tenant, kbs, query)
	if err != nil {
		return nil, err
	}
	if a.Bases == 0 {
		// None of the bases it names holds a document (not made yet, all
		// removed, a name misspelt): no search happened, so no miss, and
		// the model answers as without a knowledge base.
		return nil, nil
	}
	hit := len(found) > 0 && (a.Coverage >= cfg.Threshold || (cfg.MinCosine > 0 && a.Cosine >= cfg.MinCosine))
	t.Note(NoteHit, strconv.FormatBool(hit))
	t.Note(NoteScore, strconv.FormatFloat(a.Coverage, 'f', 2, 64))
	if !hit {
		if cfg.OnMiss == MissModel {
			return nil, nil
		}
		served := moltbot.ModelRef{Provider: "kb", Model: "no-answer"}
		if t.Visible && fn != nil {
			if err := fn(moltbot.Chunk{Content: cfg.NoAnswer, Served: served}); err != nil {
				return nil, err
			}
		}
		return &moltbot.Completion{Content: cfg.NoAnswer, Served: served, FinishReason: "stop"}, nil
	}
	ctxText, cites := st.context(found, cfg.MaxContextBytes)
	t.Messages = withSources(t.Messages, ctxText)
	t.Citations = cites
	return nil, nil
}

// context writes the sources for the model and their citations.
func (st *Stage) context(found []Found, budget int) (string, []moltbot.Citation) {
	var b strings.Builder
	b.WriteString("Answer the user's question from the numbered sources below when they hold the answer, and cite them as [1], [2]. " +
		"If they do not hold it, say that you do not know. 请依据下列编号资料回答，并以 [1]、[2] 标注出处。\n")
	var cites []moltbot.Citation
	for i, f := range found {
		n := i + 1
		text := f.Text
		if len(text) > budget {
			text = truncate(text, budget)
		}
		if text == "" {
			break
		}
		budget -= len(text)
		fmt.Fprintf(&b, "\n[%d] %s", n, f.Doc)
		if hp := f.HeadingPath(); hp != "" {
			b.WriteString(" — ")
			b.WriteString(hp)
		}
		b.WriteString("\n")
		b.WriteString(text)
		b.WriteString("\n")
		c := CitationOf(f)
		c.N = n
		cites = append(cites, c)
	}
	return b.String(), cites
}

// withSources returns msgs with the sources in the system prompt: after
// the first system message's text, or as a system message of their own
// first. msgs is not changed (the conversation's context shares it).
func withSources(msgs []moltbot.Message, sources string) []moltbot.Message {
	out := make([]moltbot.Message, 0, len(msgs)+1)
	if len(msgs) > 0 && msgs[0].Role == moltbot.RoleSystem && len(msgs[0].Parts) == 0 {
		sys := msgs[0]
		sys.Content += "\n\n" + sources
		return append(append(out, sys), msgs[1:]...)
	}
	out = append(out, moltbot.Message{Role: moltbot.RoleSystem, Content: sources})
	return append(out, msgs...)
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Empty reports whether the store holds no document at all (O(1): every
// turn asks).
func (s *Store) Empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live == 0
}

// CitationOf is the citation of a found chunk (N: its rank).
func CitationOf(f Found) moltbot.Citation {
	return moltbot.Citation{N: f.Rank, KB: f.KB, Document: f.Doc, Heading: f.HeadingPath(), Chunk: f.ID(),
		Score: f.Score, Snippet: truncate(f.Text, moltbot.MaxSnippet)}
}
