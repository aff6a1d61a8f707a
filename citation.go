package moltbot

// Citation is a source a reply drew on: a chunk of a knowledge base's
// document that the knowledge-base stage put into the model's context
// (numbered [N] there, so the model may cite it as [N]). Citations travel
// on the Completion, are stored with the assistant message, and reach the
// edges: the conversations API's messages, the OpenAI chat completion's
// extension field "citations" and EventCitation in streams.
type Citation struct {
	// N is the source's number in the context ("[1]"), from 1.
	N int `json:"n"`
	// KB is the knowledge base, Document the document's name in it.
	KB       string `json:"kb"`
	Document string `json:"document"`
	// Heading is the chunk's heading path ("Returns > Refunds"), empty for
	// text before a document's first heading.
	Heading string `json:"heading,omitempty"`
	// Chunk identifies the chunk within the knowledge base ("doc#seq").
	Chunk string `json:"chunk"`
	// Score is how the search ranked it (fused by reciprocal rank when
	// there are vectors, BM25's otherwise); higher is better.
	Score float64 `json:"score"`
	// Snippet is the start of the chunk's text (bounded, MaxSnippet).
	Snippet string `json:"snippet,omitempty"`
}

// MaxSnippet bounds Citation.Snippet, in bytes.
const MaxSnippet = 240

// MaxCitations bounds the citations of one reply.
const MaxCitations = 16
