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
		HideHelpCommand:      false,
		// A command left out of this build (see edge.go) is nil.
		Commands: slices.DeleteFunc([]*cli.Command{
			initCommand(),
			startCommand(),
			simCommand(),
			chatCommand(),
			statusCommand(),
			benchCommand(),
			clusterCommand(),
			keysCommand(),
			botsCommand(),
			kbCommand(),
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
