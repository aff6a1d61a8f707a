package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moltbot/moltbot"
)

// CodeExplainOptions are the code-explain preset's (with: of use:
// code-explain): a structured review of a snippet. The model is asked for
// JSON that a schema describes (response_format json_schema); the JSON is
// checked against it (one retry, telling the model what was wrong) and
// rendered as a summary and numbered findings.
type CodeExplainOptions struct {
	Model    string   `yaml:"model"`
	Commands []string `yaml:"commands"`
	Patterns []string `yaml:"patterns"`
	// MaxFindings bounds the findings shown (default 10).
	MaxFindings int `yaml:"max_findings"`
}

func (o *CodeExplainOptions) check() error {
	_, err := compileTrigger(o.Commands, o.Patterns)
	if o.MaxFindings < 1 || o.MaxFindings > 100 {
		err = errors.Join(err, optErr("max_findings", "want 1 to 100, got %d", o.MaxFindings))
	}
	return err
}

func registerCodeexplain() {
	register("code-explain", "a structured review of a snippet: JSON findings from the model, checked against a schema",
		func() any {
			return &CodeExplainOptions{Commands: []string{"/review", "/explain"},
				Patterns:    []string{"(?s)^(?:请)?(?:解释|审查|评审)(?:一下)?(?:这段|下面的|以下)?代码[:：]?\\s*(?P<input>.+)$", "(?is)^(?:please\\s+)?(?:review|explain)\\s+(?:this|the following)\\s+code:?\\s*(?P<input>.+)$"},
				MaxFindings: 10}
		},
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*CodeExplainOptions)
			tr, err := compileTrigger(o.Commands, o.Patterns)
			if err != nil {
				return nil, err
			}
			return &CodeExplain{base: base{name, "code-explain"}, o: *o, tr: tr}, nil
		})
}

// Review is the JSON a code-explain preset asks the model for.
type Review struct {
	Summary  string    `json:"summary"`
	Findings []Finding `json:"findings"`
}

// Finding is one point of a review.
type Finding struct {
	Line     int    `json:"line"` // 1-based; 0: the whole snippet
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

var severities = []string{"info", "warning", "error"}

// reviewSchema is Review's JSON Schema.
var reviewSchema = json.RawMessage(`{"type":"object","additionalProperties":false,"required":["summary","findings"],"properties":{` +
	`"summary":{"type":"string","description":"what the code does, in one or two sentences"},` +
	`"findings":{"type":"array","maxItems":20,"items":{"type":"object","additionalProperties":false,"required":["line","severity","message"],"properties":{` +
	`"line":{"type":"integer","minimum":0,"description":"1-based line of the snippet; 0 for the whole"},` +
	`"severity":{"type":"string","enum":["info","warning","error"]},` +
	`"message":{"type":"string"}}}}}}`)

// ParseReview reads and checks a review against the schema: the fields it
// requires, the severities it allows, lines within the snippet (lines).
func ParseReview(text string, lines int) (*Review, error) {
	text = strings.TrimSpace(text)
	if b := FencedCode(text); len(b) == 1 && !strings.HasPrefix(text, "{") {
		text = b[0].Code // a model that fenced its JSON anyway
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var raw struct {
		Summary  *string `json:"summary"`
		Findings *[]struct {
			Line     *int    `json:"line"`
			Severity *string `json:"severity"`
			Message  *string `json:"message"`
		} `json:"findings"`
	}
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not the JSON asked for: %v", err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	switch {
	case raw.Summary == nil:
		return nil, errors.New("summary: missing")
	case raw.Findings == nil:
		return nil, errors.New("findings: missing")
	}
	r := &Review{Summary: strings.TrimSpace(*raw.Summary)}
	for i, f := range *raw.Findings {
		switch {
		case f.Line == nil || f.Severity == nil || f.Message == nil:
			return nil, fmt.Errorf("findings[%d]: line, severity and message are required", i)
		case *f.Line < 0 || *f.Line > lines:
			return nil, fmt.Errorf("findings[%d].line: %d is not a line of the snippet (1 to %d, or 0)", i, *f.Line, lines)
		case !slices.Contains(severities, *f.Severity):
			return nil, fmt.Errorf("findings[%d].severity: %q is not one of info, warning, error", i, *f.Severity)
		case strings.TrimSpace(*f.Message) == "":
			return nil, fmt.Errorf("findings[%d].message: empty", i)
		}
		r.Findings = append(r.Findings, Finding{Line: *f.Line, Severity: *f.Severity, Message: strings.TrimSpace(*f.Message)})
	}
	return r, nil
}

// CodeExplain is the code-explain preset.
type CodeExplain struct {
	base
	o  CodeExplainOptions
	tr trigger
}

// Describe implements Preset.
func (c *CodeExplain) Describe() string { return "on " + c.tr.describe() + modelNote(c.o.Model) }

// BeforeModel reviews the snippet of a message its trigger selects.
func (c *CodeExplain) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !c.runs(t) {
		return nil, nil
	}
	s, ok := userText(t)
	if !ok {
		return nil, nil
	}
	code, ok := c.tr.match(s)
	if !ok {
		return nil, nil
	}
	zh := isCJK(s)
	if b := FencedCode(code); len(b) > 0 {
		code = b[0].Code
	}
	if strings.TrimSpace(code) == "" {
		if zh {
			return c.answer(t, fn, "请在命令后附上要审查的代码。", moltbot.Usage{})
		}
		return c.answer(t, fn, "Put the code to review after the command.", moltbot.Usage{})
	}
	lines := strings.Count(code, "\n") + 1
	var numbered bytes.Buffer
	for i, l := range strings.Split(code, "\n") {
		fmt.Fprintf(&numbered, "%d| %s\n", i+1, l)
	}
	lang := "English"
	if zh {
		lang = "Chinese (简体中文)"
	}
	msgs := []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: "You review code. Answer with JSON only, as the schema says: a summary of what the code does, " +
			"and findings (bugs, risks, style), each with the line it is about (the numbers before |; 0 for the whole) and a severity. " +
			"Write the summary and the messages in " + lang + "."},
		{Role: moltbot.RoleUser, Content: numbered.String()},
	}
	opts := moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "code_review", Schema: reviewSchema, Strict: true}}
	var usage moltbot.Usage
	var r *Review
	for attempt := 0; ; attempt++ {
		reply, err := ask(ctx, t, c.o.Model, msgs, opts, &usage)
		if err != nil {
			return nil, err
		}
		if r, err = ParseReview(reply, lines); err == nil {
			break
		}
		if attempt == 1 {
			return nil, moltbot.Errorf(moltbot.EUnavailable, "code-explain %s: the model's review did not hold to its schema twice: %v", c.name, err)
		}
		msgs = append(msgs, moltbot.Message{Role: moltbot.RoleAssistant, Content: reply},
			moltbot.Message{Role: moltbot.RoleUser, Content: "That JSON is wrong: " + err.Error() + ". Answer again with JSON that holds to the schema."})
	}
	return c.answer(t, fn, c.render(r, zh), usage)
}

// render writes a review for a person.
func (c *CodeExplain) render(r *Review, zh bool) string {
	var b strings.Builder
	sevZH := map[string]string{"info": "提示", "warning": "警告", "error": "错误"}
	if zh {
		fmt.Fprintf(&b, "概要：%s\n", r.Summary)
	} else {
		fmt.Fprintf(&b, "Summary: %s\n", r.Summary)
	}
	if len(r.Findings) == 0 {
		if zh {
			b.WriteString("没有发现问题。")
		} else {
			b.WriteString("No findings.")
		}
		return b.String()
	}
	if zh {
		fmt.Fprintf(&b, "发现（%d）：", len(r.Findings))
	} else {
		fmt.Fprintf(&b, "Findings (%d):", len(r.Findings))
	}
	for i, f := range r.Findings {
		if i == c.o.MaxFindings {
			if zh {
				fmt.Fprintf(&b, "\n……另有 %d 条", len(r.Findings)-i)
			} else {
				fmt.Fprintf(&b, "\n... and %d more", len(r.Findings)-i)
			}
			break
		}
		sev := f.Severity
		if zh {
			sev = sevZH[sev]
		}
		switch {
		case f.Line == 0 && zh:
			fmt.Fprintf(&b, "\n%d. [%s] 整体：%s", i+1, sev, f.Message)
		case f.Line == 0:
			fmt.Fprintf(&b, "\n%d. [%s] overall: %s", i+1, sev, f.Message)
		case zh:
			fmt.Fprintf(&b, "\n%d. [%s] 第 %d 行：%s", i+1, sev, f.Line, f.Message)
		default:
			fmt.Fprintf(&b, "\n%d. [%s] line %d: %s", i+1, sev, f.Line, f.Message)
		}
	}
	return b.String()
}
