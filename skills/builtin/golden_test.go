package builtin

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts (testdata/transcripts/*.golden)")

// script is a golden transcript's input: a preset, a fake model and the
// user's messages, one turn each.
type script struct {
	Use  string    `yaml:"use"`
	With yaml.Node `yaml:"with"`
	// Model is the fake model: "none" (a turn that reaches it fails the
	// test), "echo" (it answers what it got, its last message), or canned
	// replies, in order.
	Model  string   `yaml:"model"`
	Canned []string `yaml:"canned"`
	// Stream: the turns stream; the fake model sends its reply in pieces
	// of 3 characters and the transcript shows the pieces the user saw.
	Stream bool `yaml:"stream"`
	// Conversation: each turn's context holds the turns before it (the
	// user's messages and the replies), as a conversation's does.
	Conversation bool     `yaml:"conversation"`
	Turns        []string `yaml:"turns"`
}

// fakeModel answers as the script says and writes what it got.
type fakeModel struct {
	t      *testing.T
	mode   string
	canned []string
	log    *strings.Builder
}

func (f *fakeModel) chat(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	fmt.Fprintf(f.log, "  model got (model %q", opts.Model)
	if opts.ResponseFormat != nil {
		fmt.Fprintf(f.log, ", format %s %s", opts.ResponseFormat.Type, opts.ResponseFormat.Name)
	}
	f.log.WriteString("):\n")
	for _, m := range msgs {
		fmt.Fprintf(f.log, "    %s: %s\n", m.Role, indent(m.Content, "      "))
	}
	var reply string
	switch {
	case f.mode == "none":
		f.t.Fatalf("the model was asked, with no model in the script")
	case f.mode == "echo":
		reply = msgs[len(msgs)-1].Content
	case len(f.canned) == 0:
		f.t.Fatalf("the model was asked more often than the script has canned replies")
	default:
		reply, f.canned = f.canned[0], f.canned[1:]
	}
	served := moltbot.ModelRef{Provider: "fake", Model: "fake"}
	if fn != nil {
		rs := []rune(reply)
		for i := 0; i < len(rs); i += 3 {
			if err := fn(moltbot.Chunk{Content: string(rs[i:min(i+3, len(rs))]), Served: served}); err != nil {
				return nil, err
			}
		}
	}
	return &moltbot.Completion{Content: reply, Served: served, FinishReason: "stop", Usage: moltbot.Usage{PromptTokens: 10, CompletionTokens: utf8.RuneCountInString(reply)}}, nil
}

func indent(s, pad string) string { return strings.ReplaceAll(s, "\n", "\n"+pad) }

// goldenNow is "now" for the dates of the transcripts.
var goldenNow = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

// TestGolden runs each testdata/transcripts/*.yaml through its preset as
// the turn pipeline would (before the model, around it, the fake model)
// and compares the transcript with its .golden file (go test -update
// rewrites them; read the diff).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			got := runScript(t, file)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from its golden file; got:\n%s", golden, got)
			}
		})
	}
}

func runScript(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var sc script
	if err := yaml.Unmarshal(b, &sc); err != nil {
		t.Fatal(err)
	}
	opts := Options(sc.Use)
	if opts == nil {
		t.Fatalf("no preset %q", sc.Use)
	}
	if sc.With.Kind != 0 {
		if err := sc.With.Decode(opts); err != nil {
			t.Fatal(err)
		}
	}
	p, err := New(Spec{Name: sc.Use, Use: sc.Use, With: opts}, Env{Dir: "testdata"})
	if err != nil {
		t.Fatal(err)
	}
	if tl, ok := p.(*Tools); ok {
		tl.now, tl.loc = func() time.Time { return goldenNow }, time.UTC
	}
	var out strings.Builder
	fmt.Fprintf(&out, "# %s: %s\n", sc.Use, p.Describe())
	fake := &fakeModel{t: t, mode: sc.Model, canned: sc.Canned, log: &out}
	history := []moltbot.Message{{Role: moltbot.RoleSystem, Content: "You are a helpful assistant."}}
	for _, msg := range sc.Turns {
		fmt.Fprintf(&out, "\n> %s\n", indent(msg, "  "))
		msgs := append(slices.Clip(history), moltbot.Message{Role: moltbot.RoleUser, Content: msg})
		turn := &moltbot.Turn{Messages: msgs, Visible: sc.Stream, Model: fake.chat}
		var pieces []string
		fn := func(c moltbot.Chunk) error { pieces = append(pieces, c.Content); return nil }
		c, err := runTurn(context.Background(), p, turn, fn, fake)
		switch {
		case err != nil:
			fmt.Fprintf(&out, "< error: %v\n", err)
		default:
			if sc.Conversation {
				history = append(msgs[:len(msgs):len(msgs)], moltbot.Message{Role: moltbot.RoleAssistant, Content: c.Content})
			}
			fmt.Fprintf(&out, "< %s\n", indent(c.Content, "  "))
			fmt.Fprintf(&out, "  served by %s\n", c.Served)
			if sc.Stream {
				fmt.Fprintf(&out, "  streamed: %q\n", pieces)
				if strings.Join(pieces, "") != c.Content {
					t.Errorf("%q: the pieces streamed, %q, are not the reply %q", msg, strings.Join(pieces, ""), c.Content)
				}
			}
		}
		if len(turn.Notes) > 0 {
			keys := make([]string, 0, len(turn.Notes))
			for k := range turn.Notes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			out.WriteString("  notes:")
			for _, k := range keys {
				fmt.Fprintf(&out, " %s=%s", k, turn.Notes[k])
			}
			out.WriteString("\n")
		}
	}
	return out.String()
}

// runTurn runs one preset as actors' pipeline does: before the model (an
// answer ends the turn), around it, the model.
func runTurn(ctx context.Context, p Preset, t *moltbot.Turn, fn moltbot.StreamFunc, fake *fakeModel) (*moltbot.Completion, error) {
	if b, ok := p.(interface {
		BeforeModel(context.Context, *moltbot.Turn, moltbot.StreamFunc) (*moltbot.Completion, error)
	}); ok {
		c, err := b.BeforeModel(ctx, t, fn)
		if err != nil || c != nil {
			return c, err
		}
	}
	next := func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		if !t.Visible {
			fn = nil
		}
		return fake.chat(ctx, t.Messages, t.Options, fn)
	}
	if a, ok := p.(interface {
		AroundModel(context.Context, *moltbot.Turn, moltbot.StreamFunc,
			func(context.Context, moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error)
	}); ok {
		return a.AroundModel(ctx, t, fn, next)
	}
	return next(ctx, fn)
}
