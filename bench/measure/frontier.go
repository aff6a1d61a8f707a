package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moltbot/moltbot/bench"
)

// frontier offers open-loop load at rising rates, to the simulator directly
// and through a node, and reports the added p99 at each rate and the highest
// rate that keeps it under 1, 5 and 50 ms. Then it finds the closed-loop peak.
func frontier() error {
	simAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	sim, err := start("sim", "--addr", simAddr, "--ttft", "0", "--itl", "0", "--tokens", "16")
	if err != nil {
		return err
	}
	defer sim.stop()
	if _, err := waitHTTP("http://"+simAddr+"/api/version", 10*time.Second); err != nil {
		return err
	}
	node, url, ws, err := nodeWithLimits(simAddr)
	if err != nil {
		return err
	}
	defer func() { node.stop(); os.RemoveAll(ws) }()

	ctx := context.Background()
	run := func(target string, rate float64) (*bench.Report, error) {
		return bench.Run(ctx, bench.Config{URL: target, Mode: bench.Open, Rate: rate, Duration: 4 * time.Second, Model: "sim", Timeout: 10 * time.Second})
	}
	// The simulator answers /v1/chat/completions too: the same client, the
	// same request, only the hop through moltbot differs.
	direct := "http://" + simAddr
	fmt.Printf("throughput frontier: open loop, 4 s per rate, non-streaming, 16-token replies\n")
	fmt.Printf("%8s  %10s %10s  %10s %10s  %10s  %8s\n", "offered", "direct p50", "direct p99", "via p50", "via p99", "added p99", "via rps")
	bounds := []float64{1, 5, 50}
	best := make([]float64, len(bounds))
	for _, rate := range []float64{250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000} {
		d, err := run(direct, rate)
		if err != nil {
			return err
		}
		v, err := run(url, rate)
		if err != nil {
			return err
		}
		added := v.Latency.P99 - d.Latency.P99
		fmt.Printf("%8.0f  %10.3f %10.3f  %10.3f %10.3f  %10.3f  %8.0f", rate, d.Latency.P50, d.Latency.P99, v.Latency.P50, v.Latency.P99, added, v.SuccessRPS)
		if v.ErrorCount > 0 {
			fmt.Printf("  (%d errors)", v.ErrorCount)
		}
		fmt.Println()
		ok := v.ErrorCount == 0 && v.SuccessRPS >= 0.95*rate
		for i, b := range bounds {
			if ok && added < b {
				best[i] = rate
			}
		}
		if !ok || v.Latency.P99 > 1000 {
			break
		}
	}
	var parts []string
	for i, b := range bounds {
		parts = append(parts, fmt.Sprintf("added p99 < %g ms: %.0f req/s", b, best[i]))
	}
	fmt.Printf("frontier: %s\n\n", strings.Join(parts, "; "))

	fmt.Printf("closed-loop peak through one node (the load generator is a separate process):\n")
	for _, stream := range []bool{false, true} {
		for _, c := range []int{32, 64, 128} {
			r, err := bench.Run(ctx, bench.Config{URL: url, Mode: bench.Closed, Concurrency: c, Duration: 5 * time.Second, Stream: stream})
			if err != nil {
				return err
			}
			kind := "non-streaming"
			if stream {
				kind = "streaming"
			}
			fmt.Printf("  %-13s concurrency %3d: %7.0f req/s, p50 %6.2f ms, p99 %6.2f ms, errors %d, load generator %3.0f%% of a core\n",
				kind, c, r.SuccessRPS, r.Latency.P50, r.Latency.P99, r.ErrorCount, r.ClientCPU.PercentOfCore)
		}
	}
	fmt.Println()
	return nil
}

// nodeWithLimits starts a node for load: provider limits well above the load.
func nodeWithLimits(simAddr string) (*proc, string, string, error) {
	port := freePort()
	ws, err := os.MkdirTemp("", "moltbot-frontier-")
	if err != nil {
		return nil, "", "", err
	}
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d}
log: {level: warn, format: text}
providers:
  - {name: oa, type: openai, url: "http://%s/v1", max_in_flight: 4096, max_queue: 4096}
models: {primary: oa/sim}
`, port, simAddr)
	if err := os.WriteFile(ws+"/moltbot.yaml", []byte(cfg), 0o600); err != nil {
		return nil, "", "", err
	}
	p, err := start("start", "--workspace", ws)
	if err != nil {
		return nil, "", "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if _, err := waitHTTP(url+"/readyz", 20*time.Second); err != nil {
		p.stop()
		return nil, "", "", err
	}
	return p, url, ws, nil
}
