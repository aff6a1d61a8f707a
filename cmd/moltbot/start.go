package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/urfave/cli/v2"
)

func workspaceFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "workspace", Aliases: []string{"w"}, EnvVars: []string{"MOLTBOT_WORKSPACE"}, Value: ".",
		Usage: "the node's directory: its moltbot.yaml and data/"}
}

// loadConfig picks the config: --config FILE, else --preset NAME, else
// WORKSPACE/moltbot.yaml when it exists, else the embedded default preset.
func loadConfig(c *cli.Context) (*configs.Config, error) {
	file, preset := c.String("config"), c.String("preset")
	if file != "" && preset != "" {
		return nil, fail(2, "--config and --preset cannot be used together")
	}
	var cfg *configs.Config
	var err error
	switch {
	case file != "":
		cfg, err = configs.Load(file)
	case preset != "":
		cfg, err = configs.LoadPreset(preset)
	default:
		path := filepath.Join(c.String("workspace"), "moltbot.yaml")
		if _, statErr := os.Stat(path); statErr == nil {
			cfg, err = configs.Load(path)
		} else {
			cfg, err = configs.LoadPreset("default")
		}
	}
	if err != nil {
		return nil, fail(2, "%v", err)
	}
	// Flags override the file.
	if c.IsSet("host") {
		cfg.Server.Host = c.String("host")
	}
	if c.IsSet("port") {
		p := c.Int("port")
		if p < 0 || p > 65535 {
			return nil, fail(2, "--port: must be between 0 and 65535, got %d", p)
		}
		cfg.Server.Port = p
	}
	if c.IsSet("log-level") {
		cfg.Log.Level = c.String("log-level")
	}
	if c.IsSet("log-format") {
		cfg.Log.Format = c.String("log-format")
	}
	if c.IsSet("cluster-bind") {
		cfg.Cluster.Bind = c.String("cluster-bind")
	}
	if c.IsSet("cluster-advertise") {
		cfg.Cluster.Advertise = c.String("cluster-advertise")
	}
	if c.IsSet("join") {
		cfg.Cluster.Join = nil
		for _, j := range c.StringSlice("join") {
			for _, p := range strings.Split(j, ",") {
				if p = strings.TrimSpace(p); p != "" {
					cfg.Cluster.Join = append(cfg.Cluster.Join, p)
				}
			}
		}
	}
	if c.IsSet("cluster-key-file") {
		cfg.Cluster.KeyFile = c.String("cluster-key-file")
	}
	if c.IsSet("cluster-insecure") {
		cfg.Cluster.Insecure = c.Bool("cluster-insecure")
	}
	model := strings.TrimSpace(c.String("model"))
	if c.IsSet("model") {
		if model == "" {
			return nil, fail(2, "--model: empty; give provider/model, e.g. local/qwen2.5:0.5b")
		}
		// The model asked for goes first; the file's fallbacks stay behind it.
		cfg.Models.Primary = model
		cfg.Models.Fallback = slices.DeleteFunc(slices.Clone(cfg.Models.Fallback), func(f string) bool { return f == model })
	}
	if err := cfg.Validate(); err != nil {
		if c.IsSet("model") {
			return nil, fail(2, "%s", strings.ReplaceAll(err.Error(), "models.primary", "--model "+strconv.Quote(model)+" (models.primary)"))
		}
		return nil, fail(2, "%v", err)
	}
	if err := clusterRefused(cfg); err != nil { // the edge build (edge.go)
		return nil, fail(2, "%v", err)
	}
	return cfg, nil
}

func startCommand() *cli.Command {
	return &cli.Command{
		Name:  "start",
		Usage: "run a moltbot node",
		Description: `Starts a node: opens the workspace's data directory, starts the provider and
conversation actors and serves HTTP. The config is --config FILE, else --preset
NAME (default, demo), else WORKSPACE/moltbot.yaml, else the embedded default.
Flags override the file. SIGINT/SIGTERM stop it gracefully: no new requests,
in-flight turns finish (or are canceled after server.shutdown_timeout), data is
flushed, exit 0. SIGHUP re-reads provider credentials, the file's tenants and
the TLS certificate (server.tls) without a restart.

In a cluster (--cluster-bind), any node answers for any conversation by
forwarding to its owner; SIGTERM first hands this node's conversations to
their new owners and leaves the gossip.

Examples:
   moltbot start --workspace /opt/moltbot
   moltbot start --preset demo --port 3001 --log-format text
   moltbot start --config ./moltbot.yaml --log-level debug
   moltbot start -w ./n2 --port 3002 --cluster-bind 127.0.0.1:7956 --join 127.0.0.1:7946`,
		Flags: []cli.Flag{
			workspaceFlag(),
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config file (default: WORKSPACE/moltbot.yaml)"},
			&cli.StringFlag{Name: "preset", Usage: "use an embedded preset: default or demo"},
			&cli.StringFlag{Name: "model", Usage: "the primary model, provider/model (e.g. local/qwen2.5:0.5b); the config's fallbacks stay (overrides models.primary)"},
			&cli.StringFlag{Name: "host", Usage: "listen address (overrides server.host)"},
			&cli.IntFlag{Name: "port", Usage: "listen port, 0 for any (overrides server.port)", DefaultText: "server.port, 3000"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (overrides log.level)"},
			&cli.StringFlag{Name: "log-format", Usage: "json or text (overrides log.format)"},
			&cli.StringFlag{Name: "cluster-bind", Usage: "join a cluster: gossip on this host:port (overrides cluster.bind)"},
			&cli.StringFlag{Name: "cluster-advertise", Usage: "the gossip address others dial (overrides cluster.advertise)"},
			&cli.StringSliceFlag{Name: "join", Usage: "seed nodes host:port, comma-separated or repeated (overrides cluster.join)"},
			&cli.StringFlag{Name: "cluster-key-file", Usage: "gossip key file (overrides cluster.key_file)"},
			&cli.BoolFlag{Name: "cluster-insecure", Usage: "run a cluster beyond loopback without gossip key and certificates (overrides cluster.insecure; anyone who reaches the ports joins)"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			log, err := newLogger(c.App.ErrWriter, cfg)
			if err != nil {
				return fail(2, "%v", err)
			}
			ws, _ := filepath.Abs(c.String("workspace"))
			if _, err := ensureDir(ws); err != nil {
				return fail(1, "%v", err)
			}
			n := &Node{Config: cfg, Workspace: ws, Log: log}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := n.Start(); err != nil {
				return fail(1, "%v", err)
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					n.reloadOnSignal()
				}
			}()
			select {
			case <-ctx.Done():
			case err := <-n.Done():
				if !errors.Is(err, http.ErrServerClosed) {
					n.Shutdown(context.Background())
					return fail(1, "server stopped: %v", err)
				}
			}
			stop() // a second signal kills at once
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.Shutdown(sctx); err != nil {
				return fail(1, "shutdown: %v", err)
			}
			return nil
		},
	}
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a workspace: moltbot.yaml, data/ and skills/",
		Description: `Writes WORKSPACE/moltbot.yaml (commented, from the embedded default preset, or
--preset demo) and creates WORKSPACE/data/ and WORKSPACE/skills/. An existing
moltbot.yaml is kept unless --force is given. It also creates an operator API
key and writes it to WORKSPACE/admin.key (mode 0600, kept if it exists): the
admin commands (keys, tenants, status, cluster) read it from the workspace.
Run on a workspace whose moltbot.yaml exists but whose admin.key is missing,
it keeps the config and writes a new operator key (stop the node first).

Examples:
   moltbot init --workspace /opt/moltbot
   moltbot init --workspace ./demo --preset demo --force`,
		Flags: []cli.Flag{
			workspaceFlag(),
			&cli.StringFlag{Name: "preset", Value: "default", Usage: "preset to start from: default or demo"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite an existing moltbot.yaml"},
		},
		Action: func(c *cli.Context) error {
			ws := c.String("workspace")
			text, err := configs.PresetYAML(c.String("preset"))
			if err != nil {
				return fail(2, "--preset: %v", err)
			}
			// Private: the workspace holds the operator key, the config (it may
			// hold secrets) and the data (conversations, token signing keys).
			for _, d := range []string{ws, filepath.Join(ws, "data"), filepath.Join(ws, "skills")} {
				changed, err := ensureDir(d)
				if err != nil {
					return fail(1, "%v", err)
				}
				if changed {
					fmt.Fprintf(c.App.ErrWriter, "made %s private (0700): others could read it\n", d)
				}
			}
			path := filepath.Join(ws, "moltbot.yaml")
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if c.Bool("force") {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(path, flags, 0o600)
			if errors.Is(err, os.ErrExist) {
				// The config stays. A workspace without its operator key (deleted,
				// or made by hand) gets one: otherwise a node with auth on could
				// not be administered.
				if _, serr := os.Stat(filepath.Join(ws, adminKeyFile)); errors.Is(serr, os.ErrNotExist) {
					cfg, lerr := configs.Load(path)
					if lerr != nil {
						return fail(2, "%v", lerr)
					}
					if _, werr := writeAdminKey(ws, cfg); werr != nil {
						return fail(1, "write the admin credential (is the node running? stop it first): %v", werr)
					}
					fmt.Fprintf(c.App.Writer, "kept %s (use --force to overwrite it); wrote the operator key to %s (mode 0600)\n", path, filepath.Join(ws, adminKeyFile))
					return nil
				}
				return fail(1, "%s already exists; use --force to overwrite it", path)
			}
			if err != nil {
				return fail(1, "%v", err)
			}
			if _, err := f.Write(text); err != nil {
				f.Close()
				return fail(1, "write %s: %v", path, err)
			}
			if err := f.Close(); err != nil {
				return fail(1, "write %s: %v", path, err)
			}
			if _, err := tightenMode(path, 0o600); err != nil { // --force on an older, open file
				return fail(1, "%v", err)
			}
			cfg, err := configs.Load(path)
			if err != nil {
				return fail(1, "%v", err)
			}
			made, err := writeAdminKey(ws, cfg)
			if err != nil {
				return fail(1, "write the admin credential: %v", err)
			}
			fmt.Fprintf(c.App.Writer, "created %s, %s/ and %s/\n", path, filepath.Join(ws, "data"), filepath.Join(ws, "skills"))
			if made {
				fmt.Fprintf(c.App.Writer, "wrote the operator key to %s (mode 0600): moltbot keys, tenants and status use it\n", filepath.Join(ws, adminKeyFile))
			}
			fmt.Fprintf(c.App.Writer, "next: edit it, then run: moltbot start --workspace %s\n", ws)
			return nil
		},
	}
}
