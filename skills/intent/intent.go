// Package intent recognizes what a user's message asks for (an intent such
// as refund or order_status) with a cascade that stops at the first
// confident stage:
//
//  1. rules: RE2 patterns an intent lists (confidence 1);
//  2. ngram: a classifier trained at load from the intents' example
//     utterances, with no model (hashed character 1-3-grams for Han, kana
//     and Hangul, word unigrams and character trigrams for other scripts;
//     TF-IDF vectors; the mean of the cosines to each intent's nearest
//     example and to its centroid);
//  3. model: when configured and a provider answers, a small model asked
//     for JSON whose "intent" is an enum of the intents' names, accepted
//     only when the answer is among the classifier's top candidates.
//
// A stage is confident when its best intent scores at least the threshold
// and beats the second by more than the margin; when no stage is, the
// result is the fallback intent, marked low. The intents come from a
// workspace file (skills/intents.yaml, File), reloaded with the skills;
// Stage is the turn pipeline's stage (a BeforeModel that never answers)
// that writes the turn's notes intent, intent.confidence, intent.stage and
// intent.low for the stages after it (flows, skills, the hand-off).
// Evaluate measures a cascade on a labelled JSONL set (moltbot skills
// eval). docs/DESIGN.md, "Built: intent recognition", says why.
package intent

import (
	"slices"
	"time"
)

// File is the workspace's intents file, under the workspace.
const File = "skills/intents.yaml"

// The stages of the cascade, as the note intent.stage names them.
const (
	StageRules    = "rules"
	StageNgram    = "ngram"
	StageModel    = "model"
	StageFallback = "fallback"
)

// The turn notes the stage writes (moltbot.Turn.Note).
const (
	NoteIntent     = "intent"            // the intent's name, or the fallback's
	NoteConfidence = "intent.confidence" // "0.83"
	NoteStage      = "intent.stage"      // rules, ngram, model, fallback
	NoteLow        = "intent.low"        // "true" when the cascade fell back
)

// Defaults of Settings: the threshold and margin measured best (macro-F1)
// on testdata/intents for the classifier's cosine scores (Rasa's 0.3 and
// 0.1 are for DIET's probabilities: on cosines they fall back on a third
// of what is in scope; docs/DESIGN.md); the model's answer accepted within
// the classifier's top 3 (skills.md).
const (
	DefaultThreshold = 0.12
	DefaultMargin    = 0.02
	DefaultFallback  = "fallback"
	DefaultModelTop  = 3
)

// Bounds on the file and the text classified.
const (
	MaxFile     = 256 << 10 // bytes of an intents file
	MaxIntents  = 256       // intents in a file
	MaxExamples = 512       // examples of one intent
	MaxText     = 4 << 10   // bytes of a message classified: a longer one is cut (at a rune)
)

// Intent is one intent of the file.
type Intent struct {
	Name string
	// Description tells the model stage what the intent means.
	Description string
	// Rules are RE2 patterns: one that matches the message gives the
	// intent with confidence 1.
	Rules []string
	// Examples train the n-gram classifier.
	Examples []string
	// Line is where the intent starts in its file.
	Line int
}

// Settings are the cascade's knobs (settings: in the file).
type Settings struct {
	// Threshold: a stage's best score below it is not confident.
	Threshold float64
	// Margin: a best score within Margin of the second is ambiguous, not
	// confident.
	Margin float64
	// Fallback is the intent a turn gets when no stage is confident.
	Fallback string
	// Model is the model stage's model (an alias the router knows, or
	// provider/model); empty: no model stage.
	Model string
	// ModelTop: the model's answer is accepted only when it is among the
	// classifier's ModelTop best intents (0: any intent of the enum).
	ModelTop int
	// ModelTimeout bounds the model stage's call (0: DefaultModelTimeout).
	ModelTimeout time.Duration
	// MinExamples: lint notes an intent with fewer examples.
	MinExamples int
}

// Set is a parsed intents file, its classifier trained: what a reload
// replaces. It is not changed after Load/Parse: turns share it.
type Set struct {
	File     string
	Settings Settings
	Intents  []Intent
	// Notes are what lint reports that does not stop the file loading.
	Notes []string

	byName map[string]int
	rules  []rule
	clf    *Classifier
}

// Names are the intents' names in the file's order.
func (s *Set) Names() []string {
	out := make([]string, len(s.Intents))
	for i, in := range s.Intents {
		out[i] = in.Name
	}
	return out
}

// Has reports whether the set defines an intent named name (the fallback
// counts as defined).
func (s *Set) Has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.byName[name]
	return ok || name == s.Settings.Fallback
}

// Classifier is the set's n-gram classifier.
func (s *Set) Classifier() *Classifier { return s.clf }

// Allowed is which intents of s a bot may be given: names empty (a turn
// of no bot, or a bot that names none) is all of them.
type Allowed []string

func (a Allowed) has(name string) bool { return len(a) == 0 || slices.Contains(a, name) }
