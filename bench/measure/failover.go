package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot/bench"
)

// sample is one client request's outcome.
type sample struct {
	at       time.Duration // since the load began
	status   int
	provider string
	latency  time.Duration
}

func faults(addr, method, body string) error {
	req, _ := http.NewRequest(method, "http://"+addr+"/sim/faults", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("faults: %s", resp.Status)
	}
	return nil
}

// failoverScenarios breaks and heals the primary under a load of concurrent
// conversations, twice: once with errors (HTTP 500), once with latency.
func failoverScenarios() error {
	for _, sc := range []struct{ name, fault string }{
		{"primary answers HTTP 500", `{"error_rate":1}`},
		{"primary stalls 5 s before its first token", `{"latency":"5s"}`},
	} {
		if err := failoverScenario(sc.name, sc.fault); err != nil {
			return err
		}
	}
	return nil
}

func failoverScenario(name, fault string) error {
	const (
		clients = 32
		healthy = 5 * time.Second
		broken  = 10 * time.Second
		healed  = 10 * time.Second
	)
	var sims []*proc
	addrs := make([]string, 2)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", freePort())
		p, err := start("sim", "--addr", addrs[i], "--ttft", "20ms", "--itl", "2ms", "--tokens", "16", "--models", "m", "--seed", fmt.Sprint(i+1))
		if err != nil {
			return err
		}
		sims = append(sims, p)
		defer p.stop()
		if _, err := waitHTTP("http://"+addrs[i]+"/api/version", 10*time.Second); err != nil {
			return err
		}
	}
	_ = sims
	port := freePort()
	ws, err := os.MkdirTemp("", "moltbot-failover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ws)
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d}
log: {level: warn, format: text}
providers:
  - {name: primary, type: openai, url: "http://%s/v1", max_in_flight: 256}
  - {name: fallback, type: openai, url: "http://%s/v1", max_in_flight: 256}
models:
  primary: primary/m
  fallback: [fallback/m]
  threshold: {latency: 500ms, error_rate: 5%%}
  window: 10s
  min_requests: 20
  cooldown: 2s
  max_cooldown: 30s
`, port, addrs[0], addrs[1])
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	node, err := start("start", "--workspace", ws)
	if err != nil {
		return err
	}
	defer node.stop()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if _, err := waitHTTP(url+"/readyz", 20*time.Second); err != nil {
		return err
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}
	var mu sync.Mutex
	var samples []sample
	var stop atomic.Bool
	t0 := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(url+"/v1/conversations", "application/json", strings.NewReader(`{}`))
			if err != nil {
				return
			}
			var conv struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&conv)
			resp.Body.Close()
			for i := 0; !stop.Load(); i++ {
				s0 := time.Now()
				resp, err := client.Post(url+"/v1/conversations/"+conv.ID+"/messages", "application/json",
					bytes.NewReader([]byte(fmt.Sprintf(`{"content":"turn %d"}`, i))))
				smp := sample{at: s0.Sub(t0), latency: time.Since(s0)}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					smp.status, smp.provider = resp.StatusCode, resp.Header.Get("X-Moltbot-Provider")
					smp.latency = time.Since(s0)
				}
				mu.Lock()
				samples = append(samples, smp)
				mu.Unlock()
			}
		}()
	}
	// Watch the primary's breaker.
	var opened, closed time.Duration
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		for !stop.Load() {
			st := breakerState(url, "primary/m")
			el := time.Since(t0)
			if st == "open" && opened == 0 && el > healthy {
				opened = el
			}
			if st == "closed" && opened > 0 && closed == 0 && el > healthy+broken {
				closed = el
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(healthy)
	breakAt := time.Since(t0)
	if err := faults(addrs[0], "POST", fault); err != nil {
		return err
	}
	time.Sleep(broken)
	healAt := time.Since(t0)
	if err := faults(addrs[0], "DELETE", ""); err != nil {
		return err
	}
	time.Sleep(healed)
	stop.Store(true)
	wg.Wait()
	<-watch

	sort.Slice(samples, func(i, j int) bool { return samples[i].at < samples[j].at })
	var errs int
	var okLat, brokenLat []float64
	firstFallback, backOnPrimary := time.Duration(0), time.Duration(0)
	for _, s := range samples {
		if s.status != 200 {
			errs++
			continue
		}
		ms := float64(s.latency) / float64(time.Millisecond)
		switch {
		case s.at < breakAt:
			okLat = append(okLat, ms)
		case s.at < healAt:
			brokenLat = append(brokenLat, ms)
			if firstFallback == 0 && s.provider == "fallback/m" {
				firstFallback = s.at + s.latency - breakAt
			}
		default:
			if backOnPrimary == 0 && s.provider == "primary/m" {
				backOnPrimary = s.at + s.latency - healAt
			}
		}
	}
	ok, br := bench.Summarize(okLat), bench.Summarize(brokenLat)
	fmt.Printf("failover: %s (%d concurrent conversations; healthy %v, broken %v, healed %v)\n", name, clients, healthy, broken, healed)
	fmt.Printf("  requests %d, client-visible errors %d (%.3f%%)\n", len(samples), errs, 100*float64(errs)/float64(max(len(samples), 1)))
	fmt.Printf("  turn latency healthy        p50 %6.1f ms  p99 %6.1f ms  (%d turns)\n", ok.P50, ok.P99, ok.N)
	fmt.Printf("  turn latency primary broken p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms  (%d turns)\n", br.P50, br.P99, br.Max, br.N)
	fmt.Printf("  first answer from the fallback %v after the break; primary breaker open after %v\n",
		firstFallback.Round(time.Millisecond), (opened - breakAt).Round(time.Millisecond))
	if closed > 0 {
		fmt.Printf("  after healing: first answer from the primary after %v, breaker closed after %v\n\n",
			backOnPrimary.Round(time.Millisecond), (closed - healAt).Round(time.Millisecond))
	} else {
		fmt.Printf("  after healing: breaker did not close within %v\n\n", healed)
	}
	return nil
}

func breakerState(url, key string) string {
	resp, err := http.Get(url + "/v1/admin/providers")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out struct {
		Breakers []struct{ Provider, Model, State string } `json:"breakers"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	for _, b := range out.Breakers {
		if b.Provider+"/"+b.Model == key {
			return b.State
		}
	}
	return ""
}
