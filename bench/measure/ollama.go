package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot/bench"
)

var (
	before       = flag.String("before", "", "ollama and floor parts: also measure this older moltbot binary, interleaved with -bin")
	ollamaRounds = flag.Int("ollama-rounds", 3, "ollama part: interleaved rounds of the closed-loop runs")
)

// build is a moltbot binary under test.
type build struct{ label, path string }

// pathNode is a node whose one provider, p, is of type typ on the simulator.
type pathNode struct {
	b     build
	typ   string
	p     *proc
	url   string
	ws    string
	ready time.Duration // exec to /readyz 200
}

// startPathNode starts b's `moltbot start` with one provider of type typ
// ("ollama": the simulator's /api/chat; "openai": its /v1/chat/completions).
func startPathNode(b build, typ, simAddr string, maxInFlight int, idle string) (*pathNode, error) {
	port := freePort()
	ws, err := os.MkdirTemp("", "moltbot-ollama-")
	if err != nil {
		return nil, err
	}
	url := "http://" + simAddr
	if typ == "openai" {
		url += "/v1"
	}
	limit := ""
	if nodeMemoryLimit != "" {
		limit = ", memory_limit: " + nodeMemoryLimit
	}
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d%s}
log: {level: warn, format: text}
providers:
  - {name: p, type: %s, url: %q, max_in_flight: %d, max_queue: 4096}
models: {primary: p/sim}
conversations: {idle_timeout: %s}
`, port, limit, typ, url, maxInFlight, idle)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	t0 := time.Now()
	p, err := startBin(b.path, "start", "--workspace", ws)
	if err != nil {
		return nil, err
	}
	n := &pathNode{b: b, typ: typ, p: p, url: fmt.Sprintf("http://127.0.0.1:%d", port), ws: ws}
	if _, err := waitHTTP(n.url+"/readyz", 20*time.Second); err != nil {
		n.stop()
		return nil, fmt.Errorf("%s %s: %v\n%s", b.label, typ, err, p.out.String())
	}
	n.ready = time.Since(t0)
	return n, nil
}

func (n *pathNode) stop() {
	n.p.stop()
	os.RemoveAll(n.ws)
}

func (n *pathNode) name() string { return fmt.Sprintf("%-6s %-6s", n.typ, n.b.label) }

// startSim starts -bin's simulator with extra flags and waits for it.
func startSim(args ...string) (*proc, string, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	p, err := start(append([]string{"sim", "--addr", addr}, args...)...)
	if err != nil {
		return nil, "", err
	}
	if _, err := waitHTTP("http://"+addr+"/api/version", 10*time.Second); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}

// ollamaPath measures provider type ollama beside type openai through the
// same zero-delay simulator (it speaks both APIs), for -bin and, with
// -before, an older binary, interleaved:
//
//   - closed loop at concurrency 32, 5 s per run, non-streaming and
//     streaming, -ollama-rounds rounds in alternating order; the medians of
//     the rounds' req/s, p50 and p99;
//   - peak RSS (VmHWM) of a node holding 64 calls in flight for 10 s: a
//     simulator sending a token every 20 ms (2 s a reply), max_in_flight 64,
//     64 clients;
//   - peak RSS of a node given 10,000 conversations of one turn each.
func ollamaPath() error {
	builds := []build{{"now", *bin}}
	if *before != "" {
		builds = append(builds, build{"before", *before})
	}
	sim, simAddr, err := startSim("--ttft", "0", "--itl", "0", "--tokens", "16")
	if err != nil {
		return err
	}
	defer sim.stop()

	var nodes []*pathNode
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for _, b := range builds {
		for _, typ := range []string{"openai", "ollama"} {
			n, err := startPathNode(b, typ, simAddr, 4096, "5m")
			if err != nil {
				return err
			}
			nodes = append(nodes, n)
		}
	}

	ctx := context.Background()
	fmt.Printf("provider type ollama beside openai: the same zero-delay simulator (16 tokens), closed loop, concurrency 32, 5 s a run, %d rounds interleaved\n", *ollamaRounds)
	type key struct {
		n      *pathNode
		stream bool
	}
	runs := map[key][]*bench.Report{}
	for r := 0; r < *ollamaRounds; r++ {
		order := slices.Clone(nodes)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, stream := range []bool{false, true} {
			for _, n := range order {
				rep, err := bench.Run(ctx, bench.Config{URL: n.url, Mode: bench.Closed, Concurrency: 32, Duration: 5 * time.Second, Stream: stream})
				if err != nil {
					return err
				}
				fmt.Printf("  round %d  %s  %-13s %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n",
					r+1, n.name(), mode(stream), rep.SuccessRPS, rep.Latency.P50, rep.Latency.P99, rep.ErrorCount)
				runs[key{n, stream}] = append(runs[key{n, stream}], rep)
			}
		}
	}
	fmt.Printf("  medians of %d rounds:\n", *ollamaRounds)
	for _, stream := range []bool{false, true} {
		for _, n := range nodes {
			reps := runs[key{n, stream}]
			med := func(f func(*bench.Report) float64) float64 {
				var v []float64
				for _, r := range reps {
					v = append(v, f(r))
				}
				return bench.Summarize(v).P50
			}
			errs := 0
			for _, r := range reps {
				errs += int(r.ErrorCount)
			}
			fmt.Printf("  %s  %-13s %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n", n.name(), mode(stream),
				med(func(r *bench.Report) float64 { return r.SuccessRPS }),
				med(func(r *bench.Report) float64 { return r.Latency.P50 }),
				med(func(r *bench.Report) float64 { return r.Latency.P99 }), errs)
		}
	}
	for _, n := range nodes {
		n.stop()
	}
	nodes = nil

	// 64 calls in flight: each reply takes 2 s, a token every 20 ms.
	slow, slowAddr, err := startSim("--ttft", "0", "--itl", "20ms", "--tokens", "100")
	if err != nil {
		return err
	}
	defer slow.stop()
	fmt.Printf("\n64 calls in flight for 10 s (a token every 20 ms, 2 s a reply; max_in_flight 64, 64 clients, non-streaming):\n")
	for _, b := range builds {
		for _, typ := range []string{"openai", "ollama"} {
			f, err := inFlight(b, typ, slowAddr)
			if err != nil {
				return err
			}
			fmt.Printf("  %s  idle RSS %6.1f MiB  peak RSS %6.1f MiB  RSS at the end %6.1f MiB  (%.0f replies/s, errors %d)\n",
				f.name, f.idle, f.peak, f.end, f.rps, f.errors)
		}
	}

	fmt.Printf("\n10,000 conversations, one turn each over 16 connections, zero-delay simulator:\n")
	for _, b := range builds {
		for _, typ := range []string{"openai", "ollama"} {
			c, err := activeConversations(b, typ, simAddr, 10000)
			if err != nil {
				return err
			}
			fmt.Printf("  %s  peak RSS %6.1f MiB  RSS after 2 s %6.1f MiB  (%.0f conversations/s)\n", c.name, c.peak, c.after, c.rate)
		}
	}
	fmt.Println()
	return nil
}

// inFlightRSS is a node's memory while it holds 64 calls open.
type inFlightRSS struct {
	name            string
	idle, peak, end float64 // MiB: before the load, VmHWM, VmRSS after it
	rps             float64
	errors          int
}

// inFlight starts b's node with one provider of type typ on slowAddr, a
// simulator whose replies take long, and keeps 64 calls in flight for 10 s
// (max_in_flight 64, 64 clients, non-streaming).
func inFlight(b build, typ, slowAddr string) (inFlightRSS, error) {
	n, err := startPathNode(b, typ, slowAddr, 64, "5m")
	if err != nil {
		return inFlightRSS{}, err
	}
	defer n.stop()
	pid := n.p.cmd.Process.Pid
	f := inFlightRSS{name: n.name(), idle: rssMiB(pid)}
	rep, err := bench.Run(context.Background(), bench.Config{URL: n.url, Mode: bench.Closed, Concurrency: 64, Duration: 10 * time.Second, Timeout: 30 * time.Second})
	if err != nil {
		return f, err
	}
	f.peak, f.end, f.rps, f.errors = statusMiB(pid, "VmHWM"), rssMiB(pid), rep.SuccessRPS, rep.ErrorCount
	return f, nil
}

// conversationsRSS is a node's memory with conversations active.
type conversationsRSS struct {
	name        string
	peak, after float64 // MiB: VmHWM, VmRSS 2 s after the last
	rate        float64 // conversations created a second
}

// activeConversations starts b's node with one provider of type typ on
// simAddr and gives it n conversations of one turn each (idle_timeout 10m:
// all stay in memory).
func activeConversations(b build, typ, simAddr string, n int) (conversationsRSS, error) {
	node, err := startPathNode(b, typ, simAddr, 64, "10m")
	if err != nil {
		return conversationsRSS{}, err
	}
	defer node.stop()
	c := conversationsRSS{name: node.name()}
	if c.rate, err = fill(node.url, n); err != nil {
		return c, err
	}
	time.Sleep(2 * time.Second)
	pid := node.p.cmd.Process.Pid
	c.peak, c.after = statusMiB(pid, "VmHWM"), rssMiB(pid)
	return c, nil
}

func mode(stream bool) string {
	if stream {
		return "streaming"
	}
	return "non-streaming"
}

// statusMiB reads a kB field of /proc/PID/status (VmRSS, VmHWM) in MiB.
func statusMiB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return -1
}
