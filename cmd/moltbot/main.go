// Command moltbot is the moltbot runtime: one binary that initialises a
// workspace, runs a node, simulates a model server and chats with a node.
// This file and its siblings only wire flags to the library packages.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// exitError carries an exit code through urfave/cli.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// run is main without os.Exit, for tests.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	app.Metadata = map[string]any{"args": args} // the command line, for reports that name it
	if err := app.Run(args); err != nil {
		fmt.Fprintln(stderr, "moltbot:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 2 // usage errors from urfave/cli
	}
	return 0
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := newAppCommands(stdin, stdout, stderr)
	app.Action = unknownCommand(app.Commands)
	for _, c := range app.Commands {
		suggestSubcommands(c)
	}
	return app
}

// unknownCommand is the action of the app, or of a command with
// subcommands and no action of its own: a word that is no command is an
// error that names it and, when one is close, the command meant ("strat":
// did you mean "start"?); no word at all shows the help.
func unknownCommand(cmds []*cli.Command) cli.ActionFunc {
	return func(c *cli.Context) error {
		word := c.Args().First()
		if word == "" {
			return cli.ShowSubcommandHelp(c)
		}
		var path []string
		for _, ctx := range c.Lineage() {
			if ctx.Command != nil && ctx.Command.Name != "" && ctx.Command.Name != c.App.Name {
				path = append([]string{ctx.Command.Name}, path...)
			}
		}
		where := strings.Join(append([]string{c.App.Name}, path...), " ")
		msg := fmt.Sprintf("%q is not a command of %s", word, where)
		if s := closest(cmds, word); s != "" {
			msg += "; did you mean " + strconv.Quote(s) + "?"
		}
		return fail(2, "%s (`%s --help` lists them)", msg, where)
	}
}

// closest is the name (or alias) of cmds nearest to word: within two
// edits (one for a word of up to four letters), or one it begins; "" when
// none is.
func closest(cmds []*cli.Command, word string) string {
	best, bestD := "", 3
	if len(word) <= 4 {
		bestD = 2
	}
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, name := range append([]string{c.Name}, c.Aliases...) {
			d := editDistance(strings.ToLower(word), name)
			if len(word) >= 3 && strings.HasPrefix(name, strings.ToLower(word)) {
				d = 0
			}
			if d < bestD {
				best, bestD = c.Name, d
			}
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance of a and b (a swap of
// two letters counts one), by bytes: command names are ASCII.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// suggestSubcommands gives c, and its subcommands in turn, the
// unknownCommand action when it has subcommands and no action.
func suggestSubcommands(c *cli.Command) {
	if len(c.Subcommands) == 0 {
		return
	}
	if c.Action == nil {
		c.Action = unknownCommand(c.Subcommands)
	}
	for _, sc := range c.Subcommands {
		suggestSubcommands(sc)
	}
}

func newAppCommands(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "moltbot",
		Usage:   "an edge-optimized actor runtime for conversational AI",
		Version: moltbot.Version,
		Description: `moltbot serves chat over HTTP (OpenAI-compatible and a stateful conversations
API), keeps each conversation as an actor whose context survives restarts, and
talks to Ollama, OpenAI-compatible and Anthropic servers with failover.

Quick start:
   moltbot init --workspace ./mb        # write ./mb/moltbot.yaml
   moltbot start --workspace ./mb       # serve on 127.0.0.1:3000
   moltbot chat                         # talk to it`,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Suggest:              true,
		HideHelpCommand:      false,
		// A command left out of this build (see edge.go) is nil.
		Commands: slices.DeleteFunc([]*cli.Command{
			initCommand(),
			startCommand(),
			simCommand(),
			chatCommand(),
			modelsCommand(),
			doctorCommand(),
			statusCommand(),
			benchCommand(),
			clusterCommand(),
			keysCommand(),
			botsCommand(),
			kbCommand(),
			handoffCommand(),
			channelsCommand(),
			tenantsCommand(),
			retentionCommand(),
			cacheCommand(),
			skillsCommand(),
			auditCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Description: `Prints moltbot's version, the Go version it was built with and the platform.

Example:
   moltbot version`,
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "moltbot %s (%s, %s/%s)\n", moltbot.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
					return nil
				},
			},
		}, func(c *cli.Command) bool { return c == nil }),
		ExitErrHandler: func(*cli.Context, error) {}, // run() prints and exits
	}
}
