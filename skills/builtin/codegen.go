package builtin

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/moltbot/moltbot"
)

// CodeGenOptions are the code-gen preset's (with: of use: code-gen): the
// seed's code assistant. A message its trigger selects goes to the model
// with a system prompt asking for code; the fenced code of the reply is
// the answer.
type CodeGenOptions struct {
	// Model is the model asked (a model of the config, provider/model, or
	// one a provider lists); empty, or one the router does not know: the
	// chain.
	Model string `yaml:"model"`
	// Commands and Patterns select the preset: a message beginning with a
	// command ("/code write a quicksort in Go"), or matching an RE2
	// pattern (the seed's 生成(.*)代码; the first group, or the group
	// named input, is the language or the task).
	Commands []string `yaml:"commands"`
	Patterns []string `yaml:"patterns"`
	// System is the system prompt.
	System string `yaml:"system"`
}

const codeGenSystem = "You are a code generator. Answer with the complete code in one fenced code block (```lang ... ```), " +
	"then at most two sentences. 你是代码生成器：用一个带语言标注的代码块给出完整代码，之后最多两句说明。"

func (o *CodeGenOptions) check() error {
	_, err := compileTrigger(o.Commands, o.Patterns)
	return err
}

func registerCodegen() {
	register("code-gen", "the seed's code assistant: asks the model for code and answers with its fenced code",
		func() any {
			return &CodeGenOptions{Commands: []string{"/code"},
				Patterns: []string{`生成(.*)代码`, `(?i)^(?:please\s+)?(?:write|generate)\s+(?:me\s+)?(?:a|an|some)?\s*(\w+)\s+(?:code|function|program|script)\b`},
				System:   codeGenSystem}
		},
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*CodeGenOptions)
			tr, err := compileTrigger(o.Commands, o.Patterns)
			if err != nil {
				return nil, err
			}
			return &CodeGen{base: base{name, "code-gen"}, o: *o, tr: tr}, nil
		})
}

// CodeGen is the code-gen preset.
type CodeGen struct {
	base
	o  CodeGenOptions
	tr trigger
}

// Describe implements Preset.
func (c *CodeGen) Describe() string { return "on " + c.tr.describe() + modelNote(c.o.Model) }

func modelNote(m string) string {
	if m == "" {
		return "; model: the chain"
	}
	return "; model: " + m
}

// BeforeModel answers a message its trigger selects.
func (c *CodeGen) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !c.runs(t) {
		return nil, nil
	}
	s, ok := userText(t)
	if !ok {
		return nil, nil
	}
	input, named, ok := c.tr.matchNamed(s)
	if !ok {
		return nil, nil
	}
	task := s // a pattern's match: the whole message says what to write
	if named == nil {
		task = input // a command's: what follows it
	}
	if strings.TrimSpace(task) == "" {
		if isCJK(s) {
			return c.answer(t, fn, "请在命令后写明要生成什么代码，例如："+c.example(), moltbot.Usage{})
		}
		return c.answer(t, fn, "Say what code to write after the command, such as: "+c.example(), moltbot.Usage{})
	}
	var usage moltbot.Usage
	reply, err := ask(ctx, t, c.o.Model, []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: c.o.System},
		{Role: moltbot.RoleUser, Content: task},
	}, moltbot.ChatOptions{}, &usage)
	if err != nil {
		return nil, err
	}
	zh := isCJK(s)
	blocks := FencedCode(reply)
	var b strings.Builder
	switch {
	case len(blocks) == 0 && zh:
		b.WriteString("模型没有给出代码块，它的回答是：\n" + reply)
	case len(blocks) == 0:
		b.WriteString("The model gave no code block; it answered:\n" + reply)
	default:
		if zh {
			b.WriteString("这是生成的代码：\n")
		} else {
			b.WriteString("Here is the code:\n")
		}
		for i, bl := range blocks {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "```%s\n%s\n```", bl.Lang, bl.Code)
		}
	}
	return c.answer(t, fn, b.String(), usage)
}

// Block is a fenced code block.
type Block struct {
	Lang string // the info string's first word ("go"), or ""
	Code string // without the fences or a final newline
}

var fenceRE = lazyRE("(?m)^[ \t]*(```+|~~~+)[ \t]*([^\\s`]*)[^\n]*\n")

// FencedCode returns the fenced code blocks of a Markdown text, in order;
// a block left open runs to the end.
func FencedCode(s string) []Block {
	var out []Block
	for {
		loc := fenceRE().FindStringSubmatchIndex(s)
		if loc == nil {
			return out
		}
		fence, lang := s[loc[2]:loc[3]], s[loc[4]:loc[5]]
		body := s[loc[1]:]
		end := regexp.MustCompile(`(?m)^[ \t]*` + regexp.QuoteMeta(fence[:1]) + `{` + fmt.Sprint(len(fence)) + `,}[ \t]*$`).FindStringIndex(body)
		if end == nil {
			out = append(out, Block{Lang: lang, Code: strings.TrimRight(body, "\n")})
			return out
		}
		out = append(out, Block{Lang: lang, Code: strings.TrimRight(body[:end[0]], "\n")})
		s = body[end[1]:]
	}
}

func (c *CodeGen) example() string {
	if len(c.tr.commands) > 0 {
		return c.tr.commands[0] + " quicksort in Go"
	}
	return "生成Go代码：快速排序"
}
