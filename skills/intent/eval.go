package intent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// OutOfScope is the label of an evaluation sample that no intent should
// take: the cascade is right when it falls back.
const OutOfScope = "out_of_scope"

// Sample is a labelled utterance of an evaluation set (a JSONL line:
// {"text":"我要退货","intent":"refund","lang":"zh"}).
type Sample struct {
	Text   string `json:"text"`
	Intent string `json:"intent"`
	Lang   string `json:"lang,omitempty"`
	// File and Line say where it was read.
	File string `json:"-"`
	Line int    `json:"-"`
}

// maxSampleLine bounds a JSONL line.
const maxSampleLine = 64 << 10

// ReadSamples reads a JSONL evaluation set; file names it in errors (with
// the line). Blank lines are skipped; an unknown field, a missing text or
// intent is an error.
func ReadSamples(r io.Reader, file string) ([]Sample, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxSampleLine)
	var out []Sample
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var s Sample
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s:%d: %v (want {\"text\":..., \"intent\":..., \"lang\":...})", file, line, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s:%d: one JSON object a line", file, line)
		}
		switch {
		case strings.TrimSpace(s.Text) == "":
			return nil, fmt.Errorf("%s:%d: text: missing", file, line)
		case s.Intent == "":
			return nil, fmt.Errorf("%s:%d: intent: missing", file, line)
		}
		s.File, s.Line = file, line
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v (a line is at most %d bytes)", file, err, maxSampleLine)
	}
	return out, nil
}

// ClassStat is one intent's figures in a Report.
type ClassStat struct {
	Intent                string
	Support, TP, FP, FN   int
	Precision, Recall, F1 float64
}

// Confusion counts samples of intent Want classified as Got.
type Confusion struct {
	Want, Got string
	N         int
	Example   string
}

// Report is an evaluation's figures, as rasa test nlu gives them.
type Report struct {
	Stages   Stages
	Samples  int
	Correct  int
	Accuracy float64
	// MacroF1 is the mean F1 of the classes the set labels (the intents,
	// and out_of_scope as the fallback's class).
	MacroF1 float64
	// FallbackRate is the in-scope samples that fell back, over them.
	FallbackRate float64
	// FalseAccept is the out-of-scope samples given an intent, over them.
	FalseAccept float64
	// ByStage counts the samples each stage decided.
	ByStage    map[string]int
	Classes    []ClassStat
	Confusions []Confusion
}

// Evaluate runs the cascade on each sample and measures it. A sample
// labelled out_of_scope (or with the fallback's name) is right when the
// cascade falls back; a sample naming an intent the set does not define is
// an error naming its file and line.
func (s *Set) Evaluate(ctx context.Context, samples []Sample, o Options) (*Report, error) {
	fb := s.Settings.Fallback
	rep := &Report{Stages: o.Stages, ByStage: map[string]int{}}
	if rep.Stages == 0 {
		rep.Stages = UseAll
	}
	stats := map[string]*ClassStat{}
	stat := func(n string) *ClassStat {
		if stats[n] == nil {
			stats[n] = &ClassStat{Intent: n}
		}
		return stats[n]
	}
	conf := map[[2]string]*Confusion{}
	var inScope, fellBack, oos, accepted int
	for _, sm := range samples {
		want := sm.Intent
		if want == OutOfScope || want == fb {
			want = OutOfScope
		} else if _, ok := s.byName[want]; !ok {
			return nil, fmt.Errorf("%s:%d: intent %q is not an intent of %s (%s, or %s)", sm.File, sm.Line, sm.Intent, s.File,
				strings.Join(s.Names(), ", "), OutOfScope)
		}
		r := s.Classify(ctx, sm.Text, o)
		got := r.Intent
		if r.Stage == StageFallback {
			got = OutOfScope
		}
		rep.ByStage[r.Stage]++
		rep.Samples++
		if want == OutOfScope {
			oos++
			if got != OutOfScope {
				accepted++
			}
		} else {
			inScope++
			if got == OutOfScope {
				fellBack++
			}
		}
		stat(want).Support++
		if got == want {
			rep.Correct++
			stat(want).TP++
			continue
		}
		stat(want).FN++
		stat(got).FP++
		k := [2]string{want, got}
		if conf[k] == nil {
			conf[k] = &Confusion{Want: want, Got: got, Example: sm.Text}
		}
		conf[k].N++
	}
	if rep.Samples > 0 {
		rep.Accuracy = float64(rep.Correct) / float64(rep.Samples)
	}
	if inScope > 0 {
		rep.FallbackRate = float64(fellBack) / float64(inScope)
	}
	if oos > 0 {
		rep.FalseAccept = float64(accepted) / float64(oos)
	}
	var sum float64
	for _, c := range stats {
		if c.TP+c.FP > 0 {
			c.Precision = float64(c.TP) / float64(c.TP+c.FP)
		}
		if c.TP+c.FN > 0 {
			c.Recall = float64(c.TP) / float64(c.TP+c.FN)
		}
		if c.Precision+c.Recall > 0 {
			c.F1 = 2 * c.Precision * c.Recall / (c.Precision + c.Recall)
		}
		rep.Classes = append(rep.Classes, *c)
		if c.Support > 0 {
			sum += c.F1
		}
	}
	n := 0
	for _, c := range rep.Classes {
		if c.Support > 0 {
			n++
		}
	}
	if n > 0 {
		rep.MacroF1 = sum / float64(n)
	}
	sort.Slice(rep.Classes, func(i, j int) bool { return rep.Classes[i].Intent < rep.Classes[j].Intent })
	for _, c := range conf {
		rep.Confusions = append(rep.Confusions, *c)
	}
	sort.Slice(rep.Confusions, func(i, j int) bool {
		a, b := rep.Confusions[i], rep.Confusions[j]
		if a.N != b.N {
			return a.N > b.N
		}
		return a.Want+"\x00"+a.Got < b.Want+"\x00"+b.Got
	})
	return rep, nil
}

// Print writes the report as moltbot skills eval shows it: the summary,
// each class's precision, recall and F1, and the confusions (at most
// maxConf; 0: all).
func (r *Report) Print(w io.Writer, maxConf int) error {
	fmt.Fprintf(w, "stages: %s\nsamples: %d\naccuracy: %.3f\nmacro-F1: %.3f\nfallback rate (in scope): %.3f\nfalse-accept rate (out of scope): %.3f\n",
		r.Stages, r.Samples, r.Accuracy, r.MacroF1, r.FallbackRate, r.FalseAccept)
	var st []string
	for _, k := range []string{StageRules, StageNgram, StageModel, StageFallback} {
		st = append(st, fmt.Sprintf("%s %d", k, r.ByStage[k]))
	}
	fmt.Fprintf(w, "decided by: %s\n\n", strings.Join(st, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INTENT\tSUPPORT\tPRECISION\tRECALL\tF1")
	for _, c := range r.Classes {
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\n", c.Intent, c.Support, c.Precision, c.Recall, c.F1)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Confusions) == 0 {
		_, err := fmt.Fprintln(w, "\nno confusions")
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WANT\tGOT\tN\tEXAMPLE")
	for i, c := range r.Confusions {
		if maxConf > 0 && i == maxConf {
			fmt.Fprintf(tw, "...\t%d more\t\t\n", len(r.Confusions)-i)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%q\n", c.Want, c.Got, c.N, Truncate(c.Example, 60))
	}
	return tw.Flush()
}
