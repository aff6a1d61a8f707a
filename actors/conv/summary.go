package conv

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Summaries. When a conversation's history no longer fits its context
// budget, the oldest turns that would be left out are summarized by a
// model, and the summary is kept with the conversation
// (moltbot.Summary: stored and replicated like its messages). The model
// then gets the system prompt, the summary as a system note and the
// recent turns. Later turns reuse the summary; a new one is made only when
// more turns fall out, and it folds the previous one in. The stored
// history is not touched: retention decides what is kept.
//
// The actor decides the context (planContext: no model call, the same
// walk over the history as before summaries); the summary is made on the
// turn's goroutine, before the pipeline's stages and the model
// (contextPlan.summarize), and comes back with turnDone to be stored with
// the reply. A summary costs a model call, so it is made only for a turn
// that does not fit, and then for more than what must go: the recent turns
// kept take at most half of the room, so that the next turns fit again
// without a summary for a while. A summary that fails never fails the
// turn: the oldest turns are dropped, as without summaries.

// SummaryConfig shapes summaries (conversations.summary).
type SummaryConfig struct {
	// Off turns summaries off: the oldest turns that do not fit are
	// dropped (a device whose only model is slow may prefer that to a
	// turn that waits for a summary now and then).
	Off bool
	// Model writes the summaries, named as a request names one: "" is the
	// model of the turn that needs one (the conversation's, or the chain).
	Model string
	// MaxTokens bounds a summary (the call's max_tokens); it is also the
	// room kept for the summary in the context.
	MaxTokens int
	// Prompt is what the summarizing model is told to do.
	Prompt string
}

// DefaultSummaryPrompt is SummaryConfig.Prompt's default.
const DefaultSummaryPrompt = "You keep the memory of a conversation between a user and an assistant. " +
	"Summarize the conversation you are given, folding in the summary so far if there is one, " +
	"for the assistant who will continue the conversation without seeing these messages. " +
	"Keep names, facts, numbers, decisions, what the user asked for and prefers, tool results that matter " +
	"and questions still open; leave out greetings and repetition. Write brief plain prose in the conversation's language."

// Models is the failover router as a summary asks it: without the turn
// pipeline's stages. Guards, skills and caches are for what the user
// asked; a summary is the conversation's own bookkeeping, and a stage
// that answered it would put its answer into the conversation's memory.
type Models interface {
	Chat(ctx context.Context, chain []moltbot.ModelRef, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc, visible bool) (*moltbot.Completion, error)
}

// notePrefix starts the note that stands for the summarized messages.
const notePrefix = "Summary of the conversation so far (its earlier messages are not shown):\n"

// noteOf is the system note a model reads in place of the messages s
// covers (nil: none).
func noteOf(s *moltbot.Summary) *moltbot.Message {
	if s == nil {
		return nil
	}
	return &moltbot.Message{Role: moltbot.RoleSystem, Content: notePrefix + s.Text}
}

// systemTokens is what a system prompt costs in the context (none: 0).
func systemTokens(system string) int {
	if system == "" {
		return 0
	}
	return tokens(&moltbot.Message{Content: system})
}

func noteTokens(s *moltbot.Summary) int {
	if s == nil {
		return 0
	}
	return tokens(noteOf(s))
}

// usable is c's summary when it can stand for c's first messages: it
// covers some but not the last, and the last it covers is the message it
// names (else it was made of another history: not used, made again).
func usable(c *moltbot.Conversation) *moltbot.Summary {
	s := c.Summary
	if s == nil || s.Messages <= 0 || s.Messages >= len(c.Messages) || c.Messages[s.Messages-1].ID != s.Through {
		return nil
	}
	return s
}

// keepSummary makes s c's summary when it still fits c's history (the
// turn that made it ran while nothing else could change it, but a
// deleted or replaced history is not written over) and covers more than
// the one c holds; it reports whether c changed.
func keepSummary(c *moltbot.Conversation, s *moltbot.Summary) bool {
	if c == nil || s == nil || s.Messages >= len(c.Messages) || c.Messages[s.Messages-1].ID != s.Through {
		return false
	}
	if c.Summary != nil && c.Summary.Messages >= s.Messages {
		return false
	}
	c.Summary = s
	return true
}

// contextPlan is a turn's context as its actor decides it: msgs, ready to
// send, and, when the history overflows the budget and summaries are on,
// the summary to make first (fold not empty); msgs is then the context
// without it, for when the summary fails.
type contextPlan struct {
	msgs    []moltbot.Message
	dropped int // messages msgs leaves out (not those a summary stands for)

	// The summary due: of prev and fold, covering the conversation's
	// first upto messages (the last of them is through). gap messages
	// between fold and recent are left out of this turn (one call takes
	// fold only: a later turn summarizes them).
	fold    []moltbot.Message
	prev    *moltbot.Summary
	upto    int
	through string
	gap     int
	recent  []moltbot.Message
	// used is what the summary's model call counted (set by ask): the
	// turn's usage includes it, so a tenant pays for the summaries its
	// turns need, as for the reply.
	used   moltbot.Usage
	system string
	budget int
	// lineChars bounds a message's line in the transcript (half the
	// call's room: chunk counts a line for at most that).
	lineChars int
}

// planContext decides the context of c's next model call within budget
// tokens, on the actor's goroutine: no model is asked here.
func planContext(d *deps, c *moltbot.Conversation, budget int) contextPlan {
	var prev *moltbot.Summary
	if !d.summary.Off {
		prev = usable(c)
	}
	covered := 0
	if prev != nil {
		covered = prev.Messages
	}
	sys := systemTokens(c.System)
	rest := c.Messages[covered:]
	if len(rest) == 0 {
		msgs, dropped, _ := buildContext(c.System, c.Messages, budget)
		return contextPlan{msgs: msgs, dropped: dropped}
	}
	start, ok := window(rest, budget-sys-noteTokens(prev))
	if !ok {
		// The last turn does not fit beside the summary: without it, as
		// before summaries.
		msgs, dropped, _ := buildContext(c.System, c.Messages, budget)
		return contextPlan{msgs: msgs, dropped: dropped}
	}
	p := contextPlan{msgs: assemble(c.System, noteOf(prev), rest[start:]), dropped: start}
	if start == 0 || d.summary.Off {
		return p
	}
	// Room for the recent turns beside a summary as long as a new one may
	// be; of it, they take half, so that the next turns fit too.
	room := budget - sys - max(d.summary.MaxTokens+tokens(&moltbot.Message{Content: notePrefix}), noteTokens(prev))
	keep, ok := window(rest, room/2)
	if !ok {
		keep, ok = window(rest, room)
	}
	if !ok || keep == 0 {
		return p
	}
	// One call summarizes what fits in the summarizing model's context
	// (max_context_tokens stands for it): the prompt, the summary so far,
	// the messages, and room for the summary it writes.
	in := d.maxContext - d.summary.MaxTokens - tokens(&moltbot.Message{Content: d.summary.Prompt}) - noteTokens(prev) - 16
	n := chunk(rest[:keep], in)
	if n == 0 {
		return p
	}
	p.fold, p.prev, p.upto = slices.Clone(rest[:n]), prev, covered+n
	p.through = c.Messages[p.upto-1].ID
	p.gap, p.recent = keep-n, slices.Clone(rest[keep:])
	p.system, p.budget, p.lineChars = c.System, budget, 2*in
	return p
}

// chunk is how many of fold's first messages one summary call takes,
// whose lines fit in room tokens: whole turns (a tool call with its
// result), else whole messages, at least one (a line is cut to half the
// room).
func chunk(fold []moltbot.Message, room int) int {
	if room < 64 {
		return 0
	}
	used, n, turns := 0, 0, 0
	for n < len(fold) {
		t := min(tokens(&fold[n]), room/2)
		if used+t > room {
			break
		}
		used += t
		n++
		if n == len(fold) || fold[n].Role == moltbot.RoleUser {
			turns = n
		}
	}
	if turns > 0 {
		return turns
	}
	return n
}

// errEmptySummary: the model answered with no text.
var errEmptySummary = errors.New("the model wrote an empty summary")

// summarize makes the plan's summary on the turn's goroutine, bounded by
// half the time the turn has left, and returns the context with it. When
// the model fails, the context is the plan's without it (the oldest turns
// dropped): a failed summary never fails the turn. chain is the turn's.
func (p *contextPlan) summarize(ctx context.Context, d *deps, chain []moltbot.ModelRef, key string) (msgs []moltbot.Message, s *moltbot.Summary, dropped int) {
	s, err := p.ask(ctx, d, chain)
	var start int
	if err == nil {
		var ok bool
		if start, ok = window(p.recent, p.budget-systemTokens(p.system)-noteTokens(s)); !ok {
			err = errors.New("the summary is too long to leave room for the last turn")
		}
	}
	if err != nil {
		d.met.Inc(metrics.ContextSummaries, "failed")
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "a conversation summary failed; the oldest turns are left out instead", "conversation", key, "err", err)
		}
		return p.msgs, nil, p.dropped
	}
	d.met.Inc(metrics.ContextSummaries, "ok")
	return assemble(p.system, noteOf(s), p.recent[start:]), s, p.gap + start
}

// ask asks the summary's model for the summary.
func (p *contextPlan) ask(ctx context.Context, d *deps, chain []moltbot.ModelRef) (*moltbot.Summary, error) {
	if d.summary.Model != "" {
		var err error
		if chain, err = d.router.Resolve(d.summary.Model); err != nil {
			return nil, err
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
		defer cancel()
	}
	in := tokens(&moltbot.Message{Content: d.summary.Prompt}) + noteTokens(p.prev)
	for i := range p.fold {
		in += tokens(&p.fold[i])
	}
	req := []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: d.summary.Prompt},
		{Role: moltbot.RoleUser, Content: transcript(p.prev, p.fold, p.lineChars)},
	}
	comp, err := d.models.Chat(ctx, chain, req, moltbot.ChatOptions{MaxTokens: d.summary.MaxTokens},
		func(moltbot.Chunk) error { return nil }, false)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(comp.Content)
	if text == "" {
		return nil, errEmptySummary
	}
	// What the server counted, else the estimate (some report nothing).
	u := comp.Usage
	if u.PromptTokens == 0 {
		u.PromptTokens = in
	}
	if u.CompletionTokens == 0 {
		u.CompletionTokens = tokens(&moltbot.Message{Content: text}) - 4
	}
	p.used = u
	d.met.Add(metrics.SummaryTokens, uint64(u.PromptTokens), "prompt")
	d.met.Add(metrics.SummaryTokens, uint64(u.CompletionTokens), "completion")
	return &moltbot.Summary{Text: text, Messages: p.upto, Through: p.through, Model: comp.Served.String(), Created: time.Now().UnixMilli()}, nil
}

// transcript is what the summarizing model reads: the summary so far,
// then the messages as lines of text ("role: text", tool calls and
// results, images named), each cut to maxChars.
func transcript(prev *moltbot.Summary, fold []moltbot.Message, maxChars int) string {
	var b strings.Builder
	if prev != nil {
		b.WriteString("The summary so far:\n")
		b.WriteString(prev.Text)
		b.WriteString("\n\nThe conversation that follows it:\n")
	} else {
		b.WriteString("The conversation:\n")
	}
	var line strings.Builder
	for i := range fold {
		m := &fold[i]
		line.Reset()
		line.WriteString(string(m.Role))
		line.WriteString(":")
		if m.Content != "" {
			line.WriteString(" ")
			line.WriteString(m.Content)
		}
		for _, part := range m.Parts {
			switch part.Type {
			case moltbot.PartToolCall:
				line.WriteString(" [calls " + part.Name + "(" + part.Arguments + ")]")
			case moltbot.PartToolResult:
				line.WriteString(" [result of the call " + part.CallID + ": " + part.Content + "]")
			case moltbot.PartImage:
				line.WriteString(" [an image]")
			}
		}
		s := line.String()
		if len(s) > maxChars {
			cut := maxChars
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			s = s[:cut] + " [...]"
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}
