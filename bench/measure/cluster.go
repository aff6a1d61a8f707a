package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/moltbot/moltbot/bench"
)

type cnode struct {
	ws, url, gossip string
	p               *proc
}

// clusterNodes writes n workspaces whose nodes list each other as seeds.
func clusterNodes(n int, profile string) ([]*cnode, error) {
	var nodes []*cnode
	ports := make([][3]int, n)
	for i := range ports {
		ports[i] = [3]int{freePort(), freePort(), freePort()}
	}
	for i := 0; i < n; i++ {
		ws, err := os.MkdirTemp("", "moltbot-cluster-")
		if err != nil {
			return nil, err
		}
		c := &cnode{ws: ws, url: fmt.Sprintf("http://127.0.0.1:%d", ports[i][0]), gossip: fmt.Sprintf("127.0.0.1:%d", ports[i][1])}
		var seeds []string
		for j := range ports {
			if j != i {
				seeds = append(seeds, fmt.Sprintf(`"127.0.0.1:%d"`, ports[j][1]))
			}
		}
		cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d}
log: {level: warn, format: text}
providers:
  - {name: sim, type: sim, max_in_flight: 4096, max_queue: 4096, sim: {ttft: 0s, itl: 0s, tokens: 16}}
models: {primary: sim/sim}
conversations: {max_queued_turns: 64}
cluster: {bind: "%s", rpc: "127.0.0.1:%d", join: [%s], replicas: 2, profile: %s}
`, ports[i][0], c.gossip, ports[i][2], strings.Join(seeds, ", "), profile)
		if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		nodes = append(nodes, c)
	}
	return nodes, nil
}

func (c *cnode) start() error {
	p, err := start("start", "--workspace", c.ws)
	c.p = p
	return err
}

func (c *cnode) stop() {
	if c.p != nil {
		c.p.stop()
	}
	os.RemoveAll(c.ws)
}

func alive(url string) int {
	resp, err := http.Get(url + "/v1/admin/cluster")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct{ State string } `json:"members"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	n := 0
	for _, m := range st.Members {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

func waitAlive(nodes []*cnode, want int, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	for time.Since(t0) < timeout {
		ok := true
		for _, n := range nodes {
			if alive(n.url) != want {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(t0), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("the cluster did not converge to %d nodes in %v", want, timeout)
}

func postJSON(url, body string) (int, []byte) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func createConv(url string) (string, string, error) {
	code, b := postJSON(url+"/v1/conversations", `{}`)
	if code != 201 {
		return "", "", fmt.Errorf("create: %d %s", code, b)
	}
	var c struct{ ID, Owner string }
	json.Unmarshal(b, &c)
	return c.ID, c.Owner, nil
}

// clusterMeasure: convergence, kill -9 to answer, forwarding overhead and
// throughput of three nodes.
func clusterMeasure() error {
	fmt.Println("cluster (three node processes on 127.0.0.1, in-process simulator, replicas 2):")
	for _, profile := range []string{"lan", "local"} {
		nodes, err := clusterNodes(3, profile)
		if err != nil {
			return err
		}
		for _, n := range nodes[:2] {
			if err := n.start(); err != nil {
				return err
			}
			if _, err := waitHTTP(n.url+"/healthz", 20*time.Second); err != nil {
				return err
			}
		}
		if _, err := waitAlive(nodes[:2], 2, 30*time.Second); err != nil {
			return err
		}
		t0 := time.Now()
		if err := nodes[2].start(); err != nil {
			return err
		}
		if _, err := waitAlive(nodes, 3, 30*time.Second); err != nil {
			return err
		}
		conv := time.Since(t0)
		// kill -9 of a conversation's owner, then a turn through a survivor.
		id, owner, err := createConv(nodes[0].url)
		if err != nil {
			return err
		}
		if code, b := postJSON(nodes[1].url+"/v1/conversations/"+id+"/messages", `{"content":"before"}`); code != 200 {
			return fmt.Errorf("turn: %d %s", code, b)
		}
		var victim *cnode
		var survivor *cnode
		for _, n := range nodes {
			if n.gossip == owner {
				victim = n
			} else {
				survivor = n
			}
		}
		k0 := time.Now()
		victim.p.cmd.Process.Signal(syscall.SIGKILL)
		victim.p.cmd.Wait()
		var answered time.Duration
		for time.Since(k0) < 60*time.Second {
			if code, _ := postJSON(survivor.url+"/v1/conversations/"+id+"/messages", `{"content":"after"}`); code == 200 {
				answered = time.Since(k0)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Printf("  profile %-5s: a new node seen by all %v after its exec; kill -9 of an owner to the conversation answering on a survivor: %v\n",
			profile, conv.Round(time.Millisecond), answered.Round(time.Millisecond))
		for _, n := range nodes {
			n.stop()
		}
	}

	// Steady state, plaintext and over mutual TLS with encrypted gossip,
	// one after the other on the same machine.
	for _, secure := range []bool{false, true} {
		if err := steadyState(secure); err != nil {
			return err
		}
	}
	ctx := context.Background()
	single, err := clusterNodes(1, "lan")
	if err != nil {
		return err
	}
	defer single[0].stop()
	if err := single[0].start(); err != nil {
		return err
	}
	if _, err := waitHTTP(single[0].url+"/readyz", 20*time.Second); err != nil {
		return err
	}
	r1, err := bench.Run(ctx, bench.Config{URL: single[0].url, Conversations: 300, Turns: 10, Concurrency: 48})
	if err != nil {
		return err
	}
	fmt.Printf("  1 node (alone in its cluster, no replica), same load: %.0f turns/s, p50 %.2f ms, p99 %.2f ms, errors %d\n\n",
		r1.SuccessRPS, r1.Latency.P50, r1.Latency.P99, r1.ErrorCount)
	return nil
}

// steadyState measures three nodes at work: the cost of forwarding a turn
// to its owner, and the throughput of turns spread over the nodes.
func steadyState(secure bool) error {
	nodes, err := clusterNodes(3, "lan")
	if err != nil {
		return err
	}
	mode := "plaintext"
	if secure {
		mode = "mutual TLS + gossip key"
		if err := secureNodes(nodes); err != nil {
			return err
		}
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for _, n := range nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	if _, err := waitAlive(nodes, 3, 30*time.Second); err != nil {
		return err
	}
	for _, n := range nodes {
		if _, err := waitHTTP(n.url+"/readyz", 20*time.Second); err != nil {
			return err
		}
	}
	// Forwarding overhead: turns of conversations owned by node 0, sent to
	// node 0 (local) or node 1 (forwarded), interleaved, concurrency 1.
	var d50, d99, l50, f50 []float64
	for round := 0; round < 8; round++ {
		var id string
		for {
			cid, owner, err := createConv(nodes[0].url)
			if err != nil {
				return err
			}
			if owner == nodes[0].gossip {
				id = cid
				break
			}
		}
		var local, fwd []float64
		for i := 0; i < 80; i++ {
			for _, n := range []*cnode{nodes[i%2], nodes[(i+1)%2]} {
				t := time.Now()
				if code, b := postJSON(n.url+"/v1/conversations/"+id+"/messages", `{"content":"hello there"}`); code != 200 {
					return fmt.Errorf("turn: %d %s", code, b)
				}
				ms := float64(time.Since(t)) / float64(time.Millisecond)
				if n == nodes[0] {
					local = append(local, ms)
				} else {
					fwd = append(fwd, ms)
				}
			}
		}
		sort.Float64s(local)
		sort.Float64s(fwd)
		l50 = append(l50, bench.Percentile(local, 50))
		f50 = append(f50, bench.Percentile(fwd, 50))
		d50 = append(d50, bench.Percentile(fwd, 50)-bench.Percentile(local, 50))
		d99 = append(d99, bench.Percentile(fwd, 99)-bench.Percentile(local, 99))
	}
	fmt.Printf("  %s: turn at the owner p50 %.3f ms, forwarded p50 %.3f ms: forwarding adds p50 %.3f ms, p99 %.3f ms (median of 8 rounds of 80+80 turns)\n",
		mode, bench.Median(l50), bench.Median(f50), bench.Median(d50), bench.Median(d99))

	// Throughput: the conversations scenario spread over the three nodes,
	// against one node alone.
	ctx := context.Background()
	urls := []string{nodes[0].url, nodes[1].url, nodes[2].url}
	r3, err := bench.Run(ctx, bench.Config{URL: strings.Join(urls, ","), Conversations: 300, Turns: 10, Concurrency: 48})
	if err != nil {
		return err
	}
	fmt.Printf("  %s: 3 nodes, 300 conversations x 10 turns over all nodes, concurrency 48: %.0f turns/s, p50 %.2f ms, p99 %.2f ms, errors %d\n",
		mode, r3.SuccessRPS, r3.Latency.P50, r3.Latency.P99, r3.ErrorCount)
	return nil
}

// secureNodes gives the nodes a cluster CA's certificates and a gossip key,
// made by the binary's own `cluster ca` commands.
func secureNodes(nodes []*cnode) error {
	dir, err := os.MkdirTemp("", "moltbot-ca-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command(*bin, "cluster", "ca", "init", "--dir", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("ca init: %v: %s", err, out)
	}
	for i, n := range nodes {
		if out, err := exec.Command(*bin, "cluster", "ca", "issue", fmt.Sprintf("n%d", i+1), "--dir", dir, "--workspace", n.ws).CombinedOutput(); err != nil {
			return fmt.Errorf("ca issue: %v: %s", err, out)
		}
	}
	return nil
}
