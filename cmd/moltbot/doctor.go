package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/urfave/cli/v2"
)

// A finding of moltbot doctor: what was checked, how it went, what was
// seen and, when something is wrong, what to do.
type finding struct {
	Check  string `json:"check"`
	Status string `json:"status"` // ok, warn, fail
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "fail"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check the workspace, its config, ports, providers, disk and peers, and say how to fix what is wrong",
		Description: `Checks what a node needs before (or while) it runs, from the workspace: the
config (moltbot.yaml, or --config, or --preset), the listen port, each
provider (Ollama: reachable, and the chain's models pulled), the clock
(against each provider's Date header), the disk under the data directory,
the data directory's lock (a node running on it), the cluster's seeds, and
the permissions of the files that hold secrets. Each finding says what is
wrong and how to fix it. Exits 1 when a check fails (a warning alone
exits 0).

Examples:
   moltbot doctor
   moltbot doctor --workspace ./mb --json`,
		Flags: []cli.Flag{workspaceFlag(),
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config file (default: WORKSPACE/moltbot.yaml)"},
			&cli.StringFlag{Name: "preset", Usage: "check an embedded preset: default or demo"},
			&cli.BoolFlag{Name: "json", Usage: "print the findings as JSON"}},
		Action: func(c *cli.Context) error {
			fs := doctor(c.Context, c.String("workspace"), c.String("config"), c.String("preset"))
			failed := slices.ContainsFunc(fs, func(f finding) bool { return f.Status == statusFail })
			if c.Bool("json") {
				b, _ := json.MarshalIndent(struct {
					OK       bool      `json:"ok"`
					Findings []finding `json:"findings"`
				}{!failed, fs}, "", "  ")
				fmt.Fprintln(c.App.Writer, string(b))
			} else {
				printFindings(c.App.Writer, fs)
			}
			if failed {
				return fail(1, "doctor: something is wrong (the findings marked FAIL)")
			}
			return nil
		},
	}
}

func printFindings(w io.Writer, fs []finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "%-4s  %-16s %s\n", strings.ToUpper(f.Status), f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(w, "      %-16s fix: %s\n", "", f.Fix)
		}
	}
}

// doctor runs every check; a config that does not load stops the checks
// that need it.
func doctor(ctx context.Context, ws, file, preset string) []finding {
	var fs []finding
	add := func(check, status, detail, fix string) {
		fs = append(fs, finding{Check: check, Status: status, Detail: detail, Fix: fix})
	}
	var cfg *configs.Config
	var err error
	src := ""
	switch {
	case file != "" && preset != "":
		add("config", statusFail, "--config and --preset together", "give one of them")
		return fs
	case file != "":
		src = file
		cfg, err = configs.Load(file)
	case preset != "":
		src = "preset " + preset
		cfg, err = configs.LoadPreset(preset)
	default:
		src = filepath.Join(ws, "moltbot.yaml")
		if _, serr := os.Stat(src); serr == nil {
			cfg, err = configs.Load(src)
		} else {
			src = "the embedded default (no " + src + ")"
			cfg, err = configs.LoadPreset("default")
			add("config", statusWarn, "no moltbot.yaml in "+ws, "moltbot init --workspace "+ws+" writes one (a node without one runs on the embedded default)")
		}
	}
	if err == nil {
		_, err = channelSpecs(cfg, (&Node{}).channelTypes()) // the channels' types and options, as start checks them
	}
	if err != nil {
		add("config", statusFail, err.Error(), "fix the key the message names (moltbot.yaml's comments say what each key takes)")
		return fs
	}
	add("config", statusOK, "loads: "+src, "")
	dataDir := cfg.Storage.Path
	if !filepath.IsAbs(dataDir) {
		dataDir = filepath.Join(ws, dataDir)
	}
	running := checkPort(cfg, add)
	checkLock(dataDir, running, add)
	checkDisk(dataDir, add)
	checkProviders(ctx, cfg, add)
	checkPeers(cfg, add)
	checkFiles(ws, cfg, dataDir, add)
	return fs
}

// checkPort: the listen address is free, or a moltbot node answers there
// (running reports which).
func checkPort(cfg *configs.Config, add func(check, status, detail, fix string)) (running bool) {
	addr := net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port))
	if cfg.Server.Port == 0 {
		add("port", statusOK, "server.port is 0: the node takes any free port", "")
		return false
	}
	l, err := net.Listen("tcp", addr)
	if err == nil {
		l.Close()
		add("port", statusOK, addr+" is free", "")
		return false
	}
	host := cfg.Server.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, scheme := range []string{"http", "https"} {
		resp, herr := hc.Get(scheme + "://" + net.JoinHostPort(host, strconv.Itoa(cfg.Server.Port)) + "/healthz")
		if herr == nil {
			resp.Body.Close()
			if resp.Header.Get("X-Request-Id") != "" {
				add("port", statusOK, addr+": a moltbot node is running there", "")
				return true
			}
		}
	}
	add("port", statusFail, addr+" is taken by another program: "+err.Error(),
		fmt.Sprintf("stop it (ss -ltnp 'sport = :%d' names it), or choose another port: moltbot start --port N (make run PORT=N)", cfg.Server.Port))
	return false
}

// checkLock: the data directory's Pebble lock (a node holds it while it
// runs; another node on the same directory cannot start).
func checkLock(dir string, running bool, add func(check, status, detail, fix string)) {
	pid, err := lockHolder(filepath.Join(dir, "LOCK"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		add("data lock", statusOK, dir+" has no database yet (the node makes it)", "")
	case err != nil:
		add("data lock", statusWarn, "cannot check "+filepath.Join(dir, "LOCK")+": "+err.Error(), "")
	case pid == 0:
		add("data lock", statusOK, dir+" is free", "")
	case running:
		add("data lock", statusOK, fmt.Sprintf("%s is held by process %d (the node running here)", dir, pid), "")
	default:
		add("data lock", statusFail, fmt.Sprintf("%s is held by process %d, which does not serve this config's port", dir, pid),
			fmt.Sprintf("a node with another config runs on this data directory: stop it (kill %d) or give this one its own storage.path", pid))
	}
}

// checkDisk: free space under the data directory (Pebble needs room to
// compact, and a full disk fails every turn's synced write).
func checkDisk(dir string, add func(check, status, detail, fix string)) {
	at := dir
	for {
		if _, err := os.Stat(at); err == nil {
			break
		}
		parent := filepath.Dir(at)
		if parent == at {
			break
		}
		at = parent
	}
	free, total, err := diskSpace(at)
	if err != nil {
		add("disk", statusWarn, "cannot read the free space at "+at+": "+err.Error(), "")
		return
	}
	detail := fmt.Sprintf("%s free of %s at %s", bytesText(int64(free)), bytesText(int64(total)), at)
	switch {
	case free < 256<<20:
		add("disk", statusFail, detail, "free space: every turn is a synced write, and Pebble needs room to compact (moltbot retention sweep removes what the policy allows)")
	case free < 1<<30 || (total > 0 && free*20 < total):
		add("disk", statusWarn, detail, "the node will run out of room: free space, or set a retention policy (tenants[].retention)")
	default:
		add("disk", statusOK, detail, "")
	}
}

// checkProviders: each provider answers, an Ollama has the chain's models,
// and the clock agrees with the servers' (tokens, replicated records and
// TLS depend on it).
func checkProviders(ctx context.Context, cfg *configs.Config, add func(check, status, detail, fix string)) {
	specs, _, err := buildProviders(cfg, metrics.New("doctor"))
	if err != nil {
		add("providers", statusFail, err.Error(), "fix the provider the message names")
		return
	}
	chain := map[string][]string{}
	for _, ref := range cfg.Chain() {
		chain[ref.Provider] = append(chain[ref.Provider], ref.Model)
	}
	usable := 0
	for _, sp := range specs {
		name := "provider " + sp.Name
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		models, err := sp.Provider.Models(cctx)
		cancel()
		if err != nil {
			fix := "check that " + sp.URL + " answers from this host"
			if sp.Type == "ollama" {
				fix = "start Ollama (ollama serve) at " + sp.URL + ", or set the provider's url (or OLLAMA_HOST) to where it runs; moltbot start --preset demo falls back to the built-in simulator"
			}
			status := statusWarn
			if len(chain[sp.Name]) > 0 {
				status = statusFail // a model of the chain is there
			}
			add(name, status, fmt.Sprintf("%s (%s) does not answer: %v", sp.URL, sp.Type, err), fix)
			continue
		}
		var missing []string
		if sp.Type == "ollama" {
			for _, m := range chain[sp.Name] {
				if !slices.ContainsFunc(models, func(have string) bool {
					return have == m || strings.TrimSuffix(have, ":latest") == strings.TrimSuffix(m, ":latest")
				}) {
					missing = append(missing, m)
				}
			}
		}
		if len(missing) > 0 {
			var pulls []string
			for _, m := range missing {
				pulls = append(pulls, "moltbot models pull "+m)
			}
			add(name, statusWarn, fmt.Sprintf("%s answers, but lacks the chain's %s (it has %d models)", sp.URL, strings.Join(missing, ", "), len(models)),
				strings.Join(pulls, "; "))
		} else {
			at := sp.URL
			if at == "" {
				at = "in process"
			}
			add(name, statusOK, fmt.Sprintf("%s answers with %d models", at, len(models)), "")
		}
		if len(chain[sp.Name]) > len(missing) {
			usable++
		}
		if sp.URL != "" {
			checkClock(ctx, name, sp.URL, add)
		}
	}
	if usable == 0 {
		add("chain", statusFail, "no model of the chain ("+strings.Join(chainRefs(cfg), ", ")+") can answer",
			"see the provider findings above; moltbot start --preset demo runs with the built-in simulator")
	}
}

func chainRefs(cfg *configs.Config) []string {
	var out []string
	for _, r := range cfg.Chain() {
		out = append(out, r.String())
	}
	return out
}

// checkClock compares this host's clock with a server's Date header.
func checkClock(ctx context.Context, name, url string, add func(check, status, detail, fix string)) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, "HEAD", url, nil)
	if err != nil {
		return
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return
	}
	skew := t0.Add(time.Since(t0) / 2).Sub(date).Round(time.Second)
	if skew < 0 {
		skew = -skew
	}
	if skew > 30*time.Second {
		add("clock", statusWarn, fmt.Sprintf("this host's clock is %v off %s's (%s)", skew, name, url),
			"sync the clock (timedatectl set-ntp true): tokens, replicated records and TLS depend on it")
	}
}

// checkPeers: the cluster's seeds answer on their gossip port.
func checkPeers(cfg *configs.Config, add func(check, status, detail, fix string)) {
	if cfg.Cluster.Bind == "" {
		return
	}
	for _, seed := range cfg.Cluster.Join {
		c, err := net.DialTimeout("tcp", seed, 2*time.Second)
		if err != nil {
			add("peer "+seed, statusWarn, "the seed does not answer: "+err.Error(),
				"start that node, or fix cluster.join (a node alone serves and keeps trying)")
			continue
		}
		c.Close()
		add("peer "+seed, statusOK, "answers on its gossip port", "")
	}
}

// checkFiles: what holds secrets is readable by its owner alone.
func checkFiles(ws string, cfg *configs.Config, dataDir string, add func(check, status, detail, fix string)) {
	files := []string{filepath.Join(ws, "moltbot.yaml"), filepath.Join(ws, adminKeyFile), dataDir}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(ws, p)
	}
	files = append(files, rel(cfg.Server.TLS.KeyFile), rel(cfg.Cluster.KeyFile), rel(cfg.Cluster.TLS.KeyFile))
	var loose []string
	for _, f := range files {
		if f == "" {
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		if st.Mode().Perm()&0o077 != 0 {
			want := "600"
			if st.IsDir() {
				want = "700"
			}
			loose = append(loose, fmt.Sprintf("chmod %s %s", want, f))
		}
	}
	if len(loose) > 0 {
		add("permissions", statusWarn, fmt.Sprintf("%d files that hold secrets can be read by others", len(loose)), strings.Join(loose, "; "))
	} else {
		add("permissions", statusOK, "the config, keys and data are the owner's alone", "")
	}
}
