package intent

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/moltbot/moltbot"
)

// Stage is the turn pipeline's intent stage: a BeforeModel that never
// answers, first of the stages before the model, so that flows, skills and
// the hand-off can act on the turn's intent. It writes the notes intent,
// intent.confidence, intent.stage and, when the cascade fell back,
// intent.low = "true". Its methods are safe for concurrent use.
type Stage struct {
	set atomic.Pointer[Set]
	log *slog.Logger
	// tenant gives a turn's tenant's own intents (SetTenants; nil: none),
	// anyTenant whether some tenant has its own.
	tenant    func(t *moltbot.Turn) *Set
	anyTenant func() bool
	// Count, when set (before the stage is used), is told the stage that
	// decided each turn (a metric).
	Count func(stage string)
}

// NewStage returns a stage without intents (Swap gives it some).
func NewStage(log *slog.Logger) *Stage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stage{log: log}
}

// Swap puts set in place of the intents in use (a reload; nil: none) and
// returns the old ones.
func (s *Stage) Swap(set *Set) *Set { return s.set.Swap(set) }

// Set is the intents in use (nil: none).
func (s *Stage) Set() *Set { return s.set.Load() }

// SetTenants gives the stage tenants' own intents files (pushed ones):
// of turn t, tenant(t) (nil: none); any reports whether some tenant may
// have one (the stage idles while none may and the workspace has none).
// A tenant's file replaces the workspace's for its turns: an intents file
// is one classifier, its intents weighed against each other. Set before
// the stage serves.
func (s *Stage) SetTenants(tenant func(t *moltbot.Turn) *Set, any func() bool) {
	s.tenant, s.anyTenant = tenant, any
}

// Idle reports whether there are no intents: the pipeline passes the
// stage by (actors.Idler).
func (s *Stage) Idle() bool {
	return s.set.Load() == nil && (s.anyTenant == nil || !s.anyTenant())
}

// BeforeModel puts off classifying the turn's last user message until
// a stage reads the intent (moltbot.Turn.Later: a flow's trigger, a
// skill's intent:, the hand-off's low-confidence count), then notes the
// result; it never answers (nil, nil). What is classified is fixed here:
// the message as it is now, the bot's intents, whether the conversation
// was inside a flow. The model stage asks t.Model (the failover router)
// for settings.model; a bot that names intents (Bot.Intents) narrows the
// cascade to them. Most turns have no reader of the intent, and the
// classifier was the costliest step of a stateless turn before its model
// call (BENCHMARKS.md, the floor, session 8).
func (s *Stage) BeforeModel(ctx context.Context, t *moltbot.Turn, _ moltbot.StreamFunc) (*moltbot.Completion, error) {
	set := s.set.Load()
	if s.tenant != nil {
		if own := s.tenant(t); own != nil {
			set = own
		}
	}
	if set == nil {
		return nil, nil
	}
	text := moltbot.LastUserText(t.Messages)
	if text == "" {
		return nil, nil
	}
	o := Options{}
	if t.Bot != nil {
		o.Allowed = t.Bot.Intents
	}
	// The model stage is not asked while the conversation is inside a
	// flow (its state "flow"): the flow takes the message (an answer to
	// its question, an order number), and a model call per answer would be
	// spent on nothing.
	if set.Settings.Model != "" && t.Model != nil && t.StateOf("flow") == nil {
		model := t.Model
		o.Model = func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions) (string, error) {
			c, err := model(ctx, msgs, opts, nil)
			if err != nil {
				return "", err
			}
			return c.Content, nil
		}
	}
	t.Later(NoteIntent, func(ctx context.Context) {
		r := set.Classify(ctx, text, o)
		if r.Stage == StageFallback && r.Model != "" {
			s.log.Debug("intent: the model stage was not taken", "conversation", t.Conversation, "why", r.Model)
		}
		Note(t, r)
		if s.Count != nil {
			s.Count(r.Stage)
		}
	})
	return nil, nil
}

// Note writes r as the turn's notes.
func Note(t *moltbot.Turn, r Result) {
	t.Note(NoteIntent, r.Intent)
	t.Note(NoteConfidence, strconv.FormatFloat(r.Confidence, 'f', 2, 64))
	t.Note(NoteStage, r.Stage)
	if r.Low {
		t.Note(NoteLow, "true")
	}
}

// Confident reports whether the turn's notes say intent name was
// recognized (not the fallback, not low): what a flow's trigger and a
// skill's intent: export select on.
func Confident(ctx context.Context, t *moltbot.Turn, name string) bool {
	return name != "" && t.NoteOf(ctx, NoteIntent) == name && t.NoteOf(ctx, NoteLow) != "true"
}
