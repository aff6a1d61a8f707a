// Command measure produces the end-to-end numbers of BENCHMARKS.md by
// driving real processes: a `moltbot sim` and `moltbot start` nodes built by
// `make build`. It reports the stripped binary size, the time from exec to
// /readyz 200, idle RSS, RSS with N conversations stored (passivated) and
// active, the snapshot write rate, and the latency a node adds over calling
// the simulator directly; then the throughput frontier, the cluster,
// failover under load, provider type ollama beside openai (-before BIN
// adds an older binary to that part), the floor (moltbot against a bare
// httputil.ReverseProxy on the same simulator) and the edge figures of both
// provider types (-edge-bin BIN adds the edge build). Linux only (RSS from
// /proc).
//
//	go run ./bench/measure -bin bin/moltbot
//	go run ./bench/measure -bin bin/moltbot -only ollama -before /tmp/moltbot-old
//	go run ./bench/measure -bin bin/moltbot -only floor
//	go run ./bench/measure -bin bin/moltbot -only edge -edge-bin bin/moltbot-edge
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moltbot/moltbot/bench"
)

var (
	bin      = flag.String("bin", "bin/moltbot", "the moltbot binary")
	rounds   = flag.Int("rounds", 10, "interleaved rounds for added latency")
	perRound = flag.Int("per-round", 300, "requests per target per round")
	starts   = flag.Int("starts", 10, "starts timed for ready time")
	convs    = flag.String("conversations", "1000,10000", "conversation counts for RSS, active and passivated")
	storedN  = flag.Int("stored", 100000, "also store this many conversations (passivated only; 0: skip)")
	only     = flag.String("only", "", "run one part: node, frontier, cluster, failover, ollama, floor or edge (default: all)")
)

func main() {
	flag.Parse()
	if *proxyListen != "" { // started by the floor part as its reverse proxy
		if err := serveReverseProxy(*proxyListen, *proxyUpstream); err != nil {
			fmt.Fprintln(os.Stderr, "measure: reverse proxy:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "measure:", err)
		os.Exit(1)
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type proc struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func start(args ...string) (*proc, error) { return startBin(*bin, args...) }

// startBin runs the moltbot binary at path.
func startBin(path string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(path, args...)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	return p, p.cmd.Start()
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

func rssMiB(pid int) float64 { return statusMiB(pid, "VmRSS") }

func waitHTTP(url string, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	c := &http.Client{Timeout: time.Second}
	for time.Since(t0) < timeout {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(t0), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("%s not ready after %v", url, timeout)
}

func workspace(simAddr string, port int, idle string) (string, error) {
	ws, err := os.MkdirTemp("", "moltbot-measure-")
	if err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d}
log: {level: warn, format: text}
providers:
  - {name: oa, type: openai, url: "http://%s/v1", max_in_flight: 256, max_queue: 1024}
models: {primary: oa/sim}
conversations: {idle_timeout: %s}
`, port, simAddr, idle)
	return ws, os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600)
}

func node(simAddr, idle string) (*proc, string, string, error) {
	port := freePort()
	ws, err := workspace(simAddr, port, idle)
	if err != nil {
		return nil, "", "", err
	}
	p, err := start("start", "--workspace", ws)
	if err != nil {
		return nil, "", "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if _, err := waitHTTP(url+"/readyz", 20*time.Second); err != nil {
		p.stop()
		return nil, "", "", fmt.Errorf("%v\n%s", err, p.out.String())
	}
	return p, url, ws, nil
}

func run() error {
	fi, err := os.Stat(*bin)
	if err != nil {
		return fmt.Errorf("%v (run make build first)", err)
	}
	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs, %s/%s, %s\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel())
	fmt.Printf("binary: %s, %.1f MB (stripped)\n\n", *bin, float64(fi.Size())/1e6)
	switch *only {
	case "failover":
		return failoverScenarios()
	case "frontier":
		return frontier()
	case "cluster":
		return clusterMeasure()
	case "ollama":
		return ollamaPath()
	case "floor":
		return floor()
	case "edge":
		return edge()
	}

	simAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	sim, err := start("sim", "--addr", simAddr, "--ttft", "0", "--itl", "0", "--tokens", "16")
	if err != nil {
		return err
	}
	defer sim.stop()
	if _, err := waitHTTP("http://"+simAddr+"/api/version", 10*time.Second); err != nil {
		return err
	}

	// Ready time: exec to /readyz 200, including the first provider health check.
	var readies []float64
	for i := 0; i < *starts; i++ {
		port := freePort()
		ws, err := workspace(simAddr, port, "5m")
		if err != nil {
			return err
		}
		t0 := time.Now()
		p, err := start("start", "--workspace", ws)
		if err != nil {
			return err
		}
		if _, err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/readyz", port), 20*time.Second); err != nil {
			p.stop()
			return err
		}
		readies = append(readies, float64(time.Since(t0))/float64(time.Millisecond))
		p.stop()
		os.RemoveAll(ws)
	}
	rs := bench.Summarize(readies)
	fmt.Printf("ready: exec to /readyz 200 over %d starts: median %.1f ms, min %.1f, max %.1f\n", *starts, rs.P50, rs.Min, rs.Max)

	// Idle RSS and added latency on one node.
	p, url, ws, err := node(simAddr, "5m")
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	fmt.Printf("idle RSS: %.1f MiB\n\n", rssMiB(p.cmd.Process.Pid))

	ctx := context.Background()
	for _, stream := range []bool{false, true} {
		body := func(model string) []byte {
			b, _ := json.Marshal(map[string]any{"model": model, "stream": stream,
				"messages": []map[string]string{{"role": "user", "content": "hello, how are you today?"}}})
			return b
		}
		res, err := bench.Overhead(ctx, bench.OverheadConfig{
			Direct: bench.Target{URL: "http://" + simAddr + "/v1/chat/completions", Body: body("sim"), Stream: stream},
			Via:    bench.Target{URL: url + "/v1/chat/completions", Body: body("oa/sim"), Stream: stream},
			Rounds: *rounds, PerRound: *perRound, Warmup: 100})
		if err != nil {
			return err
		}
		what := "non-streaming, whole response"
		if stream {
			what = "streaming, time to first token"
		}
		fmt.Printf("added latency (%s), concurrency 1, %d rounds x %d interleaved requests each:\n", what, *rounds, *perRound)
		fmt.Printf("  direct sim   p50 %.3f ms  p99 %.3f ms\n", res.DirectP50, res.DirectP99)
		fmt.Printf("  via moltbot  p50 %.3f ms  p99 %.3f ms\n", res.ViaP50, res.ViaP99)
		fmt.Printf("  added        p50 %.3f ms (rounds %.3f..%.3f)  p99 %.3f ms (rounds %.3f..%.3f)\n\n",
			res.AddedP50, res.AddedP50Min, res.AddedP50Max, res.AddedP99, res.AddedP99Min, res.AddedP99Max)
	}
	p.stop()
	os.RemoveAll(ws)

	// RSS with N conversations: created with one turn each, then either kept
	// active (idle_timeout 10m) or passivated to disk (idle_timeout 1s).
	counts := strings.Split(*convs, ",")
	if *storedN > 0 {
		counts = append(counts, "stored:"+strconv.Itoa(*storedN))
	}
	for _, s := range counts {
		modes := []string{"active", "stored"}
		if rest, ok := strings.CutPrefix(s, "stored:"); ok {
			s, modes = rest, []string{"stored"}
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			continue
		}
		for _, mode := range modes {
			idle := "10m"
			if mode == "stored" {
				idle = "1s"
			}
			p, url, ws, err := node(simAddr, idle)
			if err != nil {
				return err
			}
			rate, err := fill(url, n)
			if err != nil {
				p.stop()
				return err
			}
			if mode == "stored" {
				if err := waitActive(url, 0, 120*time.Second); err != nil {
					p.stop()
					return err
				}
			}
			time.Sleep(2 * time.Second)
			rss := rssMiB(p.cmd.Process.Pid)
			du := dirMiB(filepath.Join(ws, "data"))
			label := map[string]string{"active": "active in memory", "stored": "passivated"}[mode]
			fmt.Printf("%6d conversations %-17s RSS %6.1f MiB  data %5.1f MiB  (created at %.0f conversations/s = %.0f synced snapshot writes/s)\n",
				n, label, rss, du, rate, rate*3)
			p.stop()
			if mode == "stored" {
				// A fresh process over the same data: nothing in memory but what
				// serving needs, whatever the number of stored conversations.
				q, err := start("start", "--workspace", ws)
				if err != nil {
					return err
				}
				if _, err := waitHTTP(url+"/readyz", 20*time.Second); err != nil {
					q.stop()
					return err
				}
				time.Sleep(2 * time.Second)
				fmt.Printf("%6d conversations %-17s RSS %6.1f MiB\n", n, "stored, restarted", rssMiB(q.cmd.Process.Pid))
				q.stop()
			}
			os.RemoveAll(ws)
		}
	}
	if *only == "node" {
		return nil
	}
	if err := frontier(); err != nil {
		return err
	}
	if err := clusterMeasure(); err != nil {
		return err
	}
	if err := failoverScenarios(); err != nil {
		return err
	}
	if err := ollamaPath(); err != nil {
		return err
	}
	if err := floor(); err != nil {
		return err
	}
	return edge()
}

// fill creates n conversations with one turn each over 16 connections and
// returns conversations per second.
func fill(url string, n int) (float64, error) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := oneConversation(c, url); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(t0).Seconds(), firstErr
}

func oneConversation(c *http.Client, url string) error {
	resp, err := c.Post(url+"/v1/conversations", "application/json", strings.NewReader(`{"system":"You are a helpful assistant."}`))
	if err != nil {
		return err
	}
	var conv struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&conv)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("create: %s", resp.Status)
	}
	resp, err = c.Post(url+"/v1/conversations/"+conv.ID+"/messages", "application/json", strings.NewReader(`{"content":"Hello! What can you do for me today?"}`))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("turn: %s", resp.Status)
	}
	return nil
}

func waitActive(url string, want int64, timeout time.Duration) error {
	t0 := time.Now()
	for time.Since(t0) < timeout {
		resp, err := http.Get(url + "/v1/admin/status")
		if err == nil {
			var st struct {
				Conversations struct{ Active int64 }
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Conversations.Active == want {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("conversations did not passivate within %v", timeout)
}

func dirMiB(dir string) float64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return float64(n) / (1 << 20)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
