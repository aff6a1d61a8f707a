package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

type cnode struct {
	ws, url, gossip string
	args            []string
	p               *proc
}

// clusterNodes prepares n node workspaces on free loopback ports; every
// node lists the others as seeds, as a deployment would (a restarted node
// finds its way back whichever node it asks).
func clusterNodes(t *testing.T, n int) []*cnode {
	var nodes []*cnode
	ports := make([][3]int, n)
	for i := range ports {
		ports[i] = [3]int{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	}
	for i := 0; i < n; i++ {
		ws := t.TempDir()
		port, gport, rport := ports[i][0], ports[i][1], ports[i][2]
		c := &cnode{ws: ws, url: fmt.Sprintf("http://127.0.0.1:%d", port), gossip: fmt.Sprintf("127.0.0.1:%d", gport)}
		var seeds []string
		for j := range ports {
			if j != i {
				seeds = append(seeds, fmt.Sprintf(`"127.0.0.1:%d"`, ports[j][1]))
			}
		}
		cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d, shutdown_timeout: 3s}
log: {level: info, format: text}
providers:
  - {name: sim, type: sim, sim: {ttft: 2ms, itl: 0s, tokens: 6}}
models: {primary: sim/sim}
cluster: {bind: "%s", rpc: "127.0.0.1:%d", join: [%s], replicas: 2, profile: test}
`, port, c.gossip, rport, strings.Join(seeds, ", "))
		if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c.args = []string{"moltbot", "start", "--workspace", ws}
		nodes = append(nodes, c)
	}
	return nodes
}

func (c *cnode) start(t *testing.T) {
	c.p = startProc(t, c.args...)
	waitReady(t, c.url)
}

func members(t *testing.T, url string) (alive int) {
	resp, err := http.Get(url + "/v1/admin/cluster")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct{ State string } `json:"members"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	for _, m := range st.Members {
		if m.State == "alive" {
			alive++
		}
	}
	return alive
}

func convergeProcs(t *testing.T, nodes []*cnode, want int) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%d nodes see %d alive", len(nodes), want), func() bool {
		for _, n := range nodes {
			if members(t, n.url) != want {
				return false
			}
		}
		return true
	})
}

func ownerOf(t *testing.T, url, id string) string {
	resp, err := http.Get(url + "/v1/conversations/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct{ Owner string }
	json.NewDecoder(resp.Body).Decode(&c)
	return c.Owner
}

// Three node processes; a conversation through all three; kill -9 of its
// owner; the conversation goes on from a survivor with every acknowledged turn.
func TestClusterProcessesKill9Owner(t *testing.T) {
	nodes := clusterNodes(t, 3)
	for _, n := range nodes {
		n.start(t)
	}
	convergeProcs(t, nodes, 3)
	code, body := post(t, nodes[0].url+"/v1/conversations", `{"system":"cluster"}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	var c convBody
	json.Unmarshal(body, &c)
	var acked []string
	for i := 0; i < 9; i++ {
		msg := fmt.Sprint("turn ", i)
		code, body := post(t, nodes[i%3].url+"/v1/conversations/"+c.ID+"/messages", `{"content":"`+msg+`"}`)
		if code != 200 {
			t.Fatalf("turn %d via node %d: %d %s", i, i%3, code, body)
		}
		acked = append(acked, msg)
	}
	owner := ownerOf(t, nodes[0].url, c.ID)
	var victim *cnode
	var survivors []*cnode
	for _, n := range nodes {
		if n.gossip == owner {
			victim = n
		} else {
			survivors = append(survivors, n)
		}
	}
	if victim == nil {
		t.Fatalf("owner %q is none of the nodes", owner)
	}
	victim.p.cmd.Process.Signal(syscall.SIGKILL)
	victim.p.wait(t, 10*time.Second)
	t0 := time.Now()
	// The next turn, through a survivor, waits out the failure detector.
	code, body = post(t, survivors[0].url+"/v1/conversations/"+c.ID+"/messages", `{"content":"after the kill"}`)
	if code != 200 {
		t.Fatalf("turn after kill -9 of the owner: %d %s", code, body)
	}
	t.Logf("answered on a survivor %v after kill -9 of the owner", time.Since(t0).Round(time.Millisecond))
	acked = append(acked, "after the kill")
	for _, s := range survivors {
		got := getConv(t, s.url, c.ID)
		var users []string
		for _, m := range got.Messages {
			if m.Role == "user" {
				users = append(users, m.Content)
			}
		}
		if strings.Join(users, "|") != strings.Join(acked, "|") {
			t.Fatalf("via %s: user turns %q, acknowledged %q", s.url, users, acked)
		}
		if len(got.Messages) != 1+2*len(acked) {
			t.Fatalf("via %s: %d messages", s.url, len(got.Messages))
		}
	}
}

// Rolling restart of every node, one at a time, under a steady load of
// conversations: no acknowledged turn is lost, and clients see no error but
// retriable 503s.
func TestClusterProcessesRollingRestart(t *testing.T) {
	nodes := clusterNodes(t, 3)
	for _, n := range nodes {
		n.start(t)
	}
	convergeProcs(t, nodes, 3)

	const clients = 6
	type record struct {
		id    string
		acked []string
	}
	records := make([]*record, clients)
	for i := range records {
		code, body := post(t, nodes[i%3].url+"/v1/conversations", `{}`)
		if code != 201 {
			t.Fatalf("%d %s", code, body)
		}
		var c convBody
		json.Unmarshal(body, &c)
		records[i] = &record{id: c.ID}
	}
	var mu sync.Mutex
	bad := map[int]int{}
	var retriable, refused, ok int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range records {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				n := nodes[rng.IntN(len(nodes))]
				msg := fmt.Sprintf("c%d t%d", i, j)
				code, _ := post(t, n.url+"/v1/conversations/"+r.id+"/messages", `{"content":"`+msg+`"}`)
				mu.Lock()
				switch {
				case code == 200:
					r.acked = append(r.acked, msg)
					ok++
				case code == 0: // the node we asked was down
					refused++
				case code == 503:
					retriable++
				default:
					bad[code]++
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	// The load runs on each topology before the next restart: every
	// conversation has acknowledged `settle` more turns (counted, not slept;
	// about as much load as the 300-500 ms sleeps here used to allow), so
	// the restarts are one at a time. (A tighter schedule, the next SIGTERM
	// right after one turn each, loses acknowledged turns more often:
	// docs/DESIGN.md, known limits.)
	const settle = 10
	progress := func(what string) {
		t.Helper()
		acked := func() []int {
			mu.Lock()
			defer mu.Unlock()
			out := make([]int, len(records))
			for i, r := range records {
				out[i] = len(r.acked)
			}
			return out
		}
		before := acked()
		testutil.Eventually(t, 60*time.Second, fmt.Sprintf("every conversation acknowledges %d turns %s", settle, what), func() bool {
			now := acked()
			for i := range now {
				if now[i] < before[i]+settle {
					return false
				}
			}
			return true
		})
	}
	progress("before the restarts")
	for i, n := range nodes {
		n.p.cmd.Process.Signal(syscall.SIGTERM)
		if code := n.p.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("node exited %d on SIGTERM", code)
		}
		n.start(t)
		convergeProcs(t, nodes, 3)
		progress(fmt.Sprintf("after restarting node %d", i+1))
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("turns acknowledged %d, 503 (retry) %d, refused by a node being restarted %d, other failures %v", ok, retriable, refused, bad)
	if len(bad) > 0 {
		t.Errorf("clients saw non-retriable errors: %v", bad)
	}
	for _, r := range records {
		got := getConv(t, nodes[0].url, r.id)
		have := map[string]int{}
		for _, m := range got.Messages {
			if m.Role == "user" {
				have[m.Content]++
			}
		}
		for _, a := range r.acked {
			if have[a] != 1 {
				t.Fatalf("%s: acknowledged turn %q stored %d times after the rolling restart", r.id, a, have[a])
			}
		}
	}
}
