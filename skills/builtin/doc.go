// Package builtin holds moltbot's preset skills, written in Go: each is a
// turn-pipeline stage configured under skills.presets in moltbot.yaml
// (name, use, with), built by New and wired in cmd in the order listed.
//
//   - faq answers curated questions verbatim (normalized match: case,
//     full/half width, punctuation, spaces); no model.
//   - guard masks e-mail addresses, phone numbers, Chinese ID numbers
//     (checksum), card numbers (Luhn) and blocklisted words in the user's
//     input before the model and in the model's output, streamed or not
//     (an AroundModel stage holding back a possible partial match at a
//     chunk boundary); or refuses a turn whose input has a hit.
//   - tools answers arithmetic, unit conversions and date questions, in
//     Chinese and English; no model.
//   - sentiment scores the user's message (zh and en lexicon, negation,
//     intensifiers) into Turn.Notes; it never answers.
//   - code-gen, code-explain, summarize and translate answer through the
//     turn's model (Turn.Model, the failover router) when their trigger
//     (a command prefix or an RE2 pattern) matches.
//
// Presets hold no state between turns; a built preset is safe for
// concurrent use. This package imports the domain (the root package) and
// yaml.v3 (for FAQ files) only: the node's binary grows by what the
// presets' own code weighs.
package builtin
