package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/moltbot/moltbot/bench"
)

var (
	floorRounds   = flag.Int("floor-rounds", 5, "floor part: interleaved rounds")
	floorRequests = flag.Int("floor-requests", 300, "floor part: concurrency-1 requests to each target per round and mode")
	floorDuration = flag.Duration("floor-duration", 2*time.Second, "floor part: closed-loop run per target, mode and round")
	floorConc     = flag.Int("floor-concurrency", 16, "floor part: closed-loop concurrency")
	floorTokens   = flag.Int("floor-tokens", 16, "floor part: tokens per simulated reply")

	// The floor's reverse proxy runs in its own process, like moltbot: the
	// measuring binary started again with these flags.
	proxyListen   = flag.String("reverse-proxy", "", "internal: only serve a bare httputil.ReverseProxy on this address, to -upstream")
	proxyUpstream = flag.String("upstream", "", "internal: the base URL -reverse-proxy forwards to")
)

// newReverseProxy is the floor: the standard library's reverse proxy with a
// transport sized for the load and nothing else (no auth, no metrics, no
// routing). FlushInterval -1 flushes every write, as a stream needs.
func newReverseProxy(upstream *url.URL) *httputil.ReverseProxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	tr.DisableCompression = true
	return &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(upstream) },
		Transport:     tr,
		FlushInterval: -1,
	}
}

// serveReverseProxy serves newReverseProxy on addr until SIGTERM or SIGINT.
func serveReverseProxy(addr, upstream string) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-upstream: want a base URL such as http://127.0.0.1:11434, got %q", upstream)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	rp := newReverseProxy(u)
	// Full duplex: the transport may still read the inbound body (its check
	// that nothing follows the declared length) after the simulator's reply
	// began; a half-duplex HTTP/1 server has closed it by then, and the
	// upstream connection and the streamed reply are cut (golang/go#40747:
	// "ReverseProxy read error during body copy: use of closed network
	// connection", the client sees unexpected EOF).
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-served
	return err
}

// startReverseProxy starts this program again as the floor's proxy to the
// simulator at simAddr and returns its base URL.
func startReverseProxy(simAddr string) (*proc, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	p, err := startBin(exe, "-reverse-proxy", addr, "-upstream", "http://"+simAddr)
	if err != nil {
		return nil, "", err
	}
	if _, err := waitHTTP("http://"+addr+"/api/version", 10*time.Second); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("reverse proxy: %v\n%s", err, p.out.String())
	}
	return p, "http://" + addr, nil
}

// floorNode is a moltbot node as a deployment runs it: auth on (one API
// key), metrics (always counted, scraped with the key) and a failover chain
// of two providers on the same simulator.
type floorNode struct {
	p   *proc
	url string
	ws  string
	key string
}

func startFloorNode(binPath, simAddr string) (*floorNode, error) {
	ws, err := os.MkdirTemp("", "moltbot-floor-")
	if err != nil {
		return nil, err
	}
	n := &floorNode{ws: ws}
	// init writes admin.key, which `keys create` uses; the config is ours.
	if out, err := exec.Command(binPath, "init", "--workspace", ws).CombinedOutput(); err != nil {
		n.stop()
		return nil, fmt.Errorf("moltbot init: %v\n%s", err, out)
	}
	port := freePort()
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d}
log: {level: warn, format: text}
auth: {enabled: true}
providers:
  - {name: a, type: openai, url: "http://%s/v1", max_in_flight: 256, max_queue: 1024}
  - {name: b, type: openai, url: "http://%s/v1", max_in_flight: 256, max_queue: 1024}
models: {primary: a/sim, fallback: [b/sim]}
`, port, simAddr, simAddr)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
		n.stop()
		return nil, err
	}
	if n.p, err = startBin(binPath, "start", "--workspace", ws); err != nil {
		n.stop()
		return nil, err
	}
	n.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	if _, err := waitHTTP(n.url+"/readyz", 20*time.Second); err != nil {
		n.stop()
		return nil, fmt.Errorf("%v\n%s", err, n.p.out.String())
	}
	var stderr bytes.Buffer
	cmd := exec.Command(binPath, "keys", "create", "--workspace", ws, "--name", "floor")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("moltbot keys create: %v\n%s", err, stderr.String())
	}
	n.key = strings.TrimSpace(string(out))
	return n, nil
}

func (n *floorNode) stop() {
	if n.p != nil {
		n.p.stop()
	}
	os.RemoveAll(n.ws)
}

// floorTarget is one way to the simulator's chat completions.
type floorTarget struct {
	name   string
	base   string // base URL; requests go to base + /v1/chat/completions
	model  string
	header http.Header
	body   map[bool][]byte // by stream
}

func newFloorTarget(name, base, model string, header http.Header) *floorTarget {
	t := &floorTarget{name: name, base: base, model: model, header: header, body: map[bool][]byte{}}
	for _, stream := range []bool{false, true} {
		// The request of bench.Run, so that concurrency 1 and 16 send the same.
		req := map[string]any{"model": model, "stream": stream,
			"messages": []map[string]string{{"role": "user", "content": bench.Prompt(64)}}}
		if stream {
			req["stream_options"] = map[string]bool{"include_usage": true}
		}
		t.body[stream], _ = json.Marshal(req)
	}
	return t
}

// timing is one request: to the first SSE data line (streams) and to the
// end of the body.
type timing struct{ first, total time.Duration }

// timeOne sends one request to t. Non-streaming, first is total.
func timeOne(ctx context.Context, c *http.Client, t *floorTarget, stream bool, br *bufio.Reader) (timing, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+"/v1/chat/completions", bytes.NewReader(t.body[stream]))
	if err != nil {
		return timing{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range t.header {
		req.Header[k] = vs
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return timing{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return timing{}, fmt.Errorf("%s: %s: %s", t.name, resp.Status, b)
	}
	if f := resp.Header.Get("X-Moltbot-Failovers"); f != "" && f != "0" {
		return timing{}, fmt.Errorf("%s: a failover (%s) on a healthy simulator", t.name, f)
	}
	var tm timing
	if !stream {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return timing{}, err
		}
		tm.total = time.Since(t0)
		tm.first = tm.total
		return tm, nil
	}
	br.Reset(resp.Body)
	done := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && bytes.HasPrefix(line, []byte("data:")) {
			if tm.first == 0 {
				tm.first = time.Since(t0)
			}
			done = bytes.Equal(bytes.TrimSpace(line[len("data:"):]), []byte("[DONE]"))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return timing{}, fmt.Errorf("after %v: %w", time.Since(t0), err)
		}
	}
	tm.total = time.Since(t0)
	if !done {
		return timing{}, fmt.Errorf("%s: stream ended without [DONE]", t.name)
	}
	return tm, nil
}

// spread is a median over rounds with the smallest and largest round.
type spread struct{ med, min, max float64 }

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	c := append([]float64(nil), v...)
	sort.Float64s(c)
	return spread{med: bench.Percentile(c, 50), min: c[0], max: c[len(c)-1]}
}

func (s spread) String() string {
	return fmt.Sprintf("%.3f (%.3f..%.3f)", s.med, s.min, s.max)
}

// floorRound is what one round measured for one target and mode.
type floorRound struct {
	firstP50, firstP99, totalP50, totalP99 float64 // ms, concurrency 1
	rps                                    float64 // closed loop at -floor-concurrency
	errors                                 int
}

// floor measures the simulator directly, through a bare
// httputil.ReverseProxy and through moltbot (auth, metrics and a failover
// chain on), interleaved: concurrency 1 request by request in rotating
// order, then closed loop at -floor-concurrency, target by target in an
// order that rotates every round. It prints each round and a table of the
// medians over rounds with their spread, and the two targets.
func floor() (err error) {
	sim, simAddr, err := startSim("--ttft", "0", "--itl", "0", "--tokens", fmt.Sprint(*floorTokens))
	if err != nil {
		return err
	}
	defer sim.stop()
	rp, rpURL, err := startReverseProxy(simAddr)
	if err != nil {
		return err
	}
	defer rp.stop()
	defer func() {
		if err != nil && rp.out.Len() > 0 {
			fmt.Fprintf(os.Stderr, "reverse proxy's log:\n%s\n", rp.out.String())
		}
	}()
	node, err := startFloorNode(*bin, simAddr)
	if err != nil {
		return err
	}
	defer node.stop()
	auth := http.Header{"Authorization": {"Bearer " + node.key}}
	targets := []*floorTarget{
		newFloorTarget("direct", "http://"+simAddr, "sim", nil),
		newFloorTarget("proxy", rpURL, "sim", nil),
		newFloorTarget("moltbot", node.url, "moltbot", auth),
	}
	if *before != "" { // an older build beside it, same configuration, interleaved
		old, err := startFloorNode(*before, simAddr)
		if err != nil {
			return err
		}
		defer old.stop()
		targets = append(targets, newFloorTarget("before", old.url, "moltbot", http.Header{"Authorization": {"Bearer " + old.key}}))
	}

	ctx := context.Background()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}, Timeout: 10 * time.Second}
	br := bufio.NewReaderSize(nil, 16<<10)
	closed := func(t *floorTarget, stream bool, d time.Duration) (*bench.Report, error) {
		return bench.Run(ctx, bench.Config{URL: t.base, Mode: bench.Closed, Concurrency: *floorConc, Duration: d,
			Stream: stream, Model: t.model, Headers: t.header, Timeout: 10 * time.Second})
	}
	// Warm-up: connections, the node's pools and breakers' windows, the GC's pacing.
	for _, stream := range []bool{false, true} {
		for _, t := range targets {
			for i := 0; i < 100; i++ {
				if _, err := timeOne(ctx, c, t, stream, br); err != nil {
					return fmt.Errorf("%s %s: %w", t.name, mode(stream), err)
				}
			}
			if _, err := closed(t, stream, 500*time.Millisecond); err != nil {
				return err
			}
		}
	}

	fmt.Printf("floor: the simulator (zero delay, %d tokens) directly, through httputil.ReverseProxy (own process) and through moltbot\n", *floorTokens)
	if *before != "" {
		fmt.Printf("(and through %s as \"before\", the same configuration)\n", *before)
	}
	fmt.Printf("(auth on with an API key, metrics, chain a/sim -> b/sim); %d rounds; concurrency 1: %d requests to each target a round,\n", *floorRounds, *floorRequests)
	fmt.Printf("request by request in rotating order; concurrency %d: closed loop, %v a target, order rotating every round\n", *floorConc, *floorDuration)
	type key struct {
		target string
		stream bool
	}
	rounds := map[key][]floorRound{}
	for r := 0; r < *floorRounds; r++ {
		for _, stream := range []bool{false, true} {
			lat := map[string][][2]float64{}
			for i := 0; i < *floorRequests; i++ {
				for j := range targets {
					t := targets[(i+j)%len(targets)]
					tm, err := timeOne(ctx, c, t, stream, br)
					if err != nil {
						return fmt.Errorf("%s %s: %w", t.name, mode(stream), err)
					}
					lat[t.name] = append(lat[t.name], [2]float64{ms(tm.first), ms(tm.total)})
				}
			}
			for j := range targets {
				t := targets[(r+j)%len(targets)]
				rep, err := closed(t, stream, *floorDuration)
				if err != nil {
					return err
				}
				var first, total []float64
				for _, v := range lat[t.name] {
					first, total = append(first, v[0]), append(total, v[1])
				}
				fs, ts := bench.Summarize(first), bench.Summarize(total)
				fr := floorRound{firstP50: fs.P50, firstP99: fs.P99, totalP50: ts.P50, totalP99: ts.P99, rps: rep.SuccessRPS, errors: rep.ErrorCount}
				rounds[key{t.name, stream}] = append(rounds[key{t.name, stream}], fr)
				fmt.Printf("  round %d  %-13s %-7s  c=1 p50 %.3f ms (first data %.3f)  c=%d %6.0f req/s  errors %d\n",
					r+1, mode(stream), t.name, fr.totalP50, fr.firstP50, *floorConc, fr.rps, fr.errors)
			}
		}
	}

	// Added latency is per round, against that round's direct calls; the
	// ratios are per round too (the targets of a round shared the machine).
	fmt.Printf("\n%-38s %-7s %10s %25s %25s %9s %22s\n", "", "", "c=1 p50 ms", "added p50 ms (min..max)",
		"added p99 ms (min..max)", "x proxy's", fmt.Sprintf("c=%d req/s (min..max)", *floorConc))
	var verdicts []string
	for _, stream := range []bool{false, true} {
		parts := []floorPart{endOfReply}
		if stream {
			parts = []floorPart{firstData, endOfReply}
		}
		direct := rounds[key{"direct", stream}]
		for _, part := range parts {
			what := mode(stream) + ", " + part.label
			added := map[string][]float64{}
			rps := map[string][]float64{}
			for _, t := range targets {
				var p50, a50, a99 []float64
				for i, f := range rounds[key{t.name, stream}] {
					v50, v99 := part.get(f)
					d50, d99 := part.get(direct[i])
					p50, rps[t.name] = append(p50, v50), append(rps[t.name], f.rps)
					a50, a99 = append(a50, v50-d50), append(a99, v99-d99)
				}
				added[t.name] = a50
				ad50, ad99, ratio := "-", "-", "-"
				if t.name != "direct" {
					ad50, ad99 = spreadOf(a50).String(), spreadOf(a99).String()
				}
				if t.name == "moltbot" || t.name == "before" {
					ratio = fmt.Sprintf("%.2f", spreadOf(a50).med/spreadOf(added["proxy"]).med)
				}
				fmt.Printf("%-38s %-7s %10.3f %25s %25s %9s %22s\n", what, t.name, spreadOf(p50).med, ad50, ad99, ratio, rpsString(spreadOf(rps[t.name])))
			}
			for _, name := range []string{"moltbot", "before"} {
				if len(added[name]) == 0 {
					continue
				}
				label := what
				if name != "moltbot" {
					label = name + ": " + what
				}
				var ra, rr []float64
				for i := range added[name] {
					ra = append(ra, added[name][i]/added["proxy"][i])
					rr = append(rr, rps[name][i]/rps["proxy"][i])
				}
				am, ap := spreadOf(added[name]).med, spreadOf(added["proxy"]).med
				ras := spreadOf(ra)
				verdicts = append(verdicts, fmt.Sprintf("%-48s added p50 %.3f ms, the proxy's %.3f: %.2fx (rounds %.2f..%.2f): %s",
					label, am, ap, am/ap, ras.min, ras.max, metOrNot(am/ap <= 1.2)))
				if part.label == endOfReply.label { // req/s counts whole replies
					rm, rp := spreadOf(rps[name]).med, spreadOf(rps["proxy"]).med
					rrs := spreadOf(rr)
					verdicts = append(verdicts, fmt.Sprintf("%-48s req/s %.0f, the proxy's %.0f: %.2fx (rounds %.2f..%.2f): %s",
						label, rm, rp, rm/rp, rrs.min, rrs.max, metOrNot(rm >= rp)))
				}
			}
		}
	}
	fmt.Printf("\ntargets (issue 11): moltbot's added p50 at most 1.2x the proxy's; its req/s at c=%d at least the proxy's\n", *floorConc)
	for _, v := range verdicts {
		fmt.Println("  " + v)
	}

	// Metrics were counted all along; a scrape shows them (an admin
	// credential: a chat key may not read them).
	admin, err := os.ReadFile(filepath.Join(node.ws, "admin.key"))
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodGet, node.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("\nmoltbot /metrics with the admin key: %s, %d bytes; node RSS at the end %.1f MiB (peak %.1f)\n\n",
		resp.Status, len(b), rssMiB(node.p.cmd.Process.Pid), statusMiB(node.p.cmd.Process.Pid, "VmHWM"))
	return nil
}

// floorPart is what a latency is timed to.
type floorPart struct {
	label string
	get   func(floorRound) (p50, p99 float64)
}

var (
	endOfReply = floorPart{"to the end of the reply", func(f floorRound) (float64, float64) { return f.totalP50, f.totalP99 }}
	firstData  = floorPart{"to the first data line", func(f floorRound) (float64, float64) { return f.firstP50, f.firstP99 }}
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func rpsString(s spread) string { return fmt.Sprintf("%.0f (%.0f..%.0f)", s.med, s.min, s.max) }

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
