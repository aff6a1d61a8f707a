package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"text/tabwriter"
	"text/template"

	"github.com/urfave/cli/v2"
)

// templateHelp is urfave/cli v2.27.7's printHelpCustom as upstream wrote
// it, with text/template: what moltbot's help looked like before
// third_party/urfave-cli-v2 rendered it by hand.
func templateHelp(out io.Writer, templ string, data interface{}, customFuncs map[string]interface{}) {
	funcMap := template.FuncMap(cli.HelpTemplateFuncs())
	for k, v := range customFuncs {
		funcMap[k] = v
	}
	w := tabwriter.NewWriter(out, 1, 8, 2, ' ', 0)
	t := template.Must(template.New("help").Funcs(funcMap).Parse(templ))
	for name, value := range cli.HelpSubTemplates() {
		template.Must(t.New(name).Parse(value))
	}
	if err := t.Execute(w, data); err != nil {
		return // upstream returns without flushing the tabwriter
	}
	w.Flush()
}

// helpArgs lists every way to ask for help of every command of the app:
// --help and the help command at each level.
func helpArgs(cmds []*cli.Command, path []string) [][]string {
	var out [][]string
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		p := append(append([]string{}, path...), c.Name)
		out = append(out, append(append([]string{}, p...), "--help"))
		out = append(out, append(append(append([]string{}, path...), "help"), c.Name))
		if len(c.Subcommands) > 0 {
			out = append(out, append(append([]string{}, p...), "help"))
			out = append(out, helpArgs(c.Subcommands, p)...)
		}
	}
	return out
}

// TestHelpWithoutTemplates: every help page of moltbot, rendered by the
// patched urfave/cli (third_party/urfave-cli-v2/help_render.go, no
// text/template, so the linker can drop unused methods), is byte for byte
// the page urfave/cli's templates render.
func TestHelpWithoutTemplates(t *testing.T) {
	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	cases := append([][]string{{"--help"}, {"help"}, {"-h"}}, helpArgs(app.Commands, nil)...)
	if len(cases) < 40 {
		t.Fatalf("only %d help pages found: the walk of the commands is broken", len(cases))
	}
	byHand := cli.HelpPrinterCustom
	defer func() { cli.HelpPrinterCustom = byHand }()
	pages := 0
	for _, args := range cases {
		cli.HelpPrinterCustom = byHand
		_, got, gotErr := runCLI(t, "", args...)
		cli.HelpPrinterCustom = templateHelp
		_, want, wantErr := runCLI(t, "", args...)
		if got != want || gotErr != wantErr {
			t.Errorf("moltbot %s: by hand\n%s\n(stderr %q)\nby template\n%s\n(stderr %q)", strings.Join(args, " "), got, gotErr, want, wantErr)
			continue
		}
		if strings.Contains(got, "USAGE:") {
			pages++
		}
	}
	if pages < len(cases)-5 {
		t.Errorf("only %d of %d runs printed a help page", pages, len(cases))
	}
	// A template of its own cannot be rendered without text/template:
	// said on stderr, nothing on stdout.
	var out, errw bytes.Buffer
	defer func(w io.Writer) { cli.ErrWriter = w }(cli.ErrWriter)
	cli.ErrWriter = &errw
	byHand(&out, "{{.Name}}", app, nil)
	if out.Len() != 0 || !strings.Contains(errw.String(), "only the built-in help templates") {
		t.Errorf("custom template: stdout %q, stderr %q", out.String(), errw.String())
	}
}
