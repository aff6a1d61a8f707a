package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/skills"
	"github.com/moltbot/moltbot/skills/flow"
	"github.com/moltbot/moltbot/skills/intent"
	"github.com/urfave/cli/v2"
)

// openFlows loads the workspace's flows (skills/flows/*.yaml); their skill
// nodes may call the skills of sk (nil: none).
func openFlows(c *cli.Context, sk *skills.Skills) (*flow.Set, error) {
	has := func(string) bool { return false }
	if sk != nil {
		has = sk.Has
	}
	set, err := flow.Load(filepath.Join(c.String("workspace"), "skills", flow.Dir), "skills/"+flow.Dir, has)
	if err != nil {
		return nil, fail(1, "%v", err)
	}
	return set, nil
}

// listFlows prints each flow: name, file, version, triggers, nodes.
func listFlows(w io.Writer, set *flow.Set) error {
	if len(set.Flows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tFILE\tVERSION\tTRIGGERS\tNODES")
	for _, f := range set.Flows {
		var trig []string
		for _, n := range f.Triggers() {
			trig = append(trig, n.Patterns()...)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", f.Name, f.File, f.Version, strings.Join(trig, " "), len(f.Nodes))
	}
	return tw.Flush()
}

// testFlows runs msgs as the turns of one conversation through the flows,
// printing what each did. A single message no flow takes is handed back
// (rest) for the skills.
func testFlows(c *cli.Context, sk *skills.Skills, set *flow.Set, msgs []string) (rest []string, done bool, err error) {
	w := c.App.Writer
	var caller flow.Skills
	if sk != nil {
		caller = sk
	}
	st := flow.NewStage(caller, nil)
	st.Swap(set)
	call := simModel(c, w)
	model := func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		text, err := call(opts.Model, msgs[len(msgs)-1].Content)
		return &moltbot.Completion{Content: text}, err
	}
	in, err := openIntents(c)
	if err != nil {
		return nil, true, err
	}
	// The intent is printed when a trigger names one (it is what starts
	// the flow then).
	byIntent := false
	for _, f := range set.Flows {
		for _, n := range f.Triggers() {
			byIntent = byIntent || n.Intent != ""
		}
	}
	var state moltbot.StageState
	for i, msg := range msgs {
		t := &moltbot.Turn{Space: "test", Conversation: "test", State: state, Model: model,
			Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: msg}}}
		if len(msgs) > 1 {
			fmt.Fprintf(w, "> %s\n", msg)
		}
		if in != nil {
			// The intent stage comes first: a trigger may name an intent.
			r := in.Classify(c.Context, msg, intent.Options{Stages: intent.UseRules | intent.UseNgram})
			intent.Note(t, r)
			if byIntent {
				fmt.Fprintf(w, "intent: %s (%s, %.2f)\n", r.Intent, r.Stage, r.Confidence)
			}
		}
		comp, step, err := st.Run(c.Context, t)
		if err != nil {
			return nil, true, fail(1, "message %d: %v", i+1, err)
		}
		if t.StateChanged() {
			state = t.State
		}
		if step == nil && len(msgs) == 1 {
			return msgs, false, nil // the skills' turn
		}
		if step == nil {
			fmt.Fprintln(w, "no flow takes it (it goes to the skills, then the model)")
			continue
		}
		fmt.Fprintf(w, "flow: %s (version %s), nodes: %s\n", step.Flow, step.Version, strings.Join(step.Nodes, " -> "))
		switch {
		case comp != nil:
			fmt.Fprintf(w, "reply:\n%s\n", comp.Content)
		default:
			fmt.Fprintln(w, "the flow said nothing: the message goes on to the skills, then the model")
		}
		switch {
		case step.Handoff:
			fmt.Fprintln(w, "handed off: the conversation waits for a person")
		case step.Waiting != "":
			fmt.Fprintf(w, "waiting at: %s\n", step.Waiting)
		default:
			fmt.Fprintln(w, "the flow ended")
		}
	}
	return nil, true, nil
}
