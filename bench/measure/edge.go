package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

var (
	edgeBin      = flag.String("edge-bin", "", "edge part: also measure this binary, the edge build (make build-edge: bin/moltbot-edge)")
	edgeMemLimit = flag.String("edge-memory-limit", "", "edge part: also measure 10,000 active conversations with this server.memory_limit (e.g. 40MiB)")
)

// nodeMemoryLimit is the server.memory_limit of the nodes startPathNode
// starts ("": none).
var nodeMemoryLimit string

// The edge goals of issue 11. RSS goals are in MB (10^6 bytes), the
// stricter reading; figures print in MiB beside them.
const (
	goalIdleMB     = 25
	goalConvsMB    = 60
	goalInFlightMB = 512
	goalReadyMs    = 30
)

// edge measures the edge figures on both provider paths (a node whose one
// provider is of type openai or of type ollama, on the same simulator): the
// binary's size; exec to /readyz 200 over -starts starts, interleaved
// between paths and builds; idle RSS 2 s after ready; RSS with 10,000
// active conversations; peak RSS with 64 calls held open by a slow
// simulator.
func edge() error {
	builds := []build{{"now", *bin}}
	if *edgeBin != "" {
		builds = append(builds, build{"edge", *edgeBin})
	}
	if *before != "" {
		builds = append(builds, build{"before", *before})
	}
	fmt.Printf("edge figures, provider types openai and ollama on one simulator\n")
	for _, b := range builds {
		fi, err := os.Stat(b.path)
		if err != nil {
			return err
		}
		fmt.Printf("  binary %-5s %s: %.2f MB (%d bytes)\n", b.label, b.path, float64(fi.Size())/1e6, fi.Size())
	}

	sim, simAddr, err := startSim("--ttft", "0", "--itl", "0", "--tokens", "16")
	if err != nil {
		return err
	}
	defer sim.stop()
	type path struct {
		b   build
		typ string
	}
	var paths []path
	for _, b := range builds {
		for _, typ := range []string{"openai", "ollama"} {
			paths = append(paths, path{b, typ})
		}
	}
	ready := map[path][]float64{}
	idle := map[path][]float64{}
	for i := 0; i < *starts; i++ {
		for j := range paths {
			p := paths[(i+j)%len(paths)]
			n, err := startPathNode(p.b, p.typ, simAddr, 4, "5m")
			if err != nil {
				return err
			}
			ready[p] = append(ready[p], ms(n.ready))
			if i < 3 { // idle RSS of the first three starts
				time.Sleep(2 * time.Second)
				idle[p] = append(idle[p], rssMiB(n.p.cmd.Process.Pid))
			}
			n.stop()
		}
	}
	fmt.Printf("  exec to /readyz 200 (%d starts each, interleaved) and idle RSS 2 s after ready (the first 3 starts):\n", *starts)
	for _, p := range paths {
		r, s := spreadOf(ready[p]), spreadOf(idle[p])
		fmt.Printf("    %-6s %-6s ready %5.1f ms (%.1f..%.1f)  idle RSS %5.1f MiB (%.1f..%.1f) = %.1f MB\n",
			p.typ, p.b.label, r.med, r.min, r.max, s.med, s.min, s.max, s.med*1.048576)
	}

	slow, slowAddr, err := startSim("--ttft", "0", "--itl", "20ms", "--tokens", "100")
	if err != nil {
		return err
	}
	defer slow.stop()
	convs := map[string]conversationsRSS{}
	flight := map[string]inFlightRSS{}
	for _, typ := range []string{"openai", "ollama"} {
		// -bin, and -before beside it (the edge build's heap is -bin's).
		for _, b := range builds {
			if b.label == "edge" {
				continue
			}
			c, err := activeConversations(b, typ, simAddr, 10000)
			if err != nil {
				return err
			}
			if b.label == "now" {
				convs[typ] = c
			}
			fmt.Printf("  %s  10,000 active conversations: RSS after 2 s %.1f MiB, peak %.1f MiB (%.0f conversations/s)\n", c.name, c.after, c.peak, c.rate)
			if *edgeMemLimit != "" && b.label == "now" { // the key is new: older builds refuse it
				nodeMemoryLimit = *edgeMemLimit
				c, err := activeConversations(b, typ, simAddr, 10000)
				nodeMemoryLimit = ""
				if err != nil {
					return err
				}
				fmt.Printf("  %s  10,000 active conversations, memory_limit %s: RSS after 2 s %.1f MiB = %.1f MB, peak %.1f MiB (%.0f conversations/s)\n",
					c.name, *edgeMemLimit, c.after, c.after*1.048576, c.peak, c.rate)
			}
		}
		f, err := inFlight(builds[0], typ, slowAddr)
		if err != nil {
			return err
		}
		flight[typ] = f
		fmt.Printf("  %s  64 calls in flight for 10 s: peak RSS %.1f MiB, at the end %.1f MiB (%.0f replies/s, errors %d)\n", f.name, f.peak, f.end, f.rps, f.errors)
	}

	// Goals per build: -bin's, then the edge build's. Idle RSS and ready
	// time are each build's own; the conversations and in-flight figures
	// are measured on -bin only (the same heap code in both builds), and
	// are marked so on the edge build's line.
	fmt.Printf("  goals (MB = 10^6 bytes):\n")
	for _, b := range builds {
		if b.label == "before" {
			continue
		}
		heapOf := ""
		if b.label != builds[0].label {
			heapOf = " (-bin's)"
		}
		for _, typ := range []string{"openai", "ollama"} {
			p := path{b, typ}
			r, i := spreadOf(ready[p]).med, spreadOf(idle[p]).med*1.048576
			c, f := convs[typ].after*1.048576, flight[typ].peak*1.048576
			fmt.Printf("    %-4s %-6s idle RSS %.1f MB < %d: %s; 10,000 conversations%s %.1f MB < %d: %s; 64 in flight peak%s %.1f MB < %d: %s; ready %.1f ms < %d: %s\n",
				b.label, typ, i, goalIdleMB, metOrNot(i < goalIdleMB), heapOf, c, goalConvsMB, metOrNot(c < goalConvsMB),
				heapOf, f, goalInFlightMB, metOrNot(f < goalInFlightMB), r, goalReadyMs, metOrNot(r < goalReadyMs))
		}
	}
	fmt.Println()
	return nil
}
