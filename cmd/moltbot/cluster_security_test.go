package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// A cluster bound beyond loopback refuses to start without a gossip key and
// a node certificate, saying what to do; cluster.insecure is the only way
// out, and it is logged at every start.
func TestClusterBeyondLoopbackNeedsKeyAndCertificates(t *testing.T) {
	ws := t.TempDir()
	cfgText := fmt.Sprintf(`server: {port: 0}
providers: [{name: sim, type: sim}]
models: {primary: sim/sim}
cluster: {bind: "127.0.0.1:%d", advertise: "10.9.9.9:7946", rpc: "127.0.0.1:%d", profile: test}
`, testutil.FreePort(t), testutil.FreePort(t))
	cfg, err := configs.Parse("moltbot.yaml", []byte(cfgText), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws}
	err = n.Start()
	if err == nil {
		n.Shutdown(ctxT(t))
		t.Fatal("a cluster advertised beyond loopback started without key and certificates")
	}
	for _, want := range []string{"cluster.key_file", "cluster.tls", "moltbot cluster ca init", "cluster.insecure"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not mention %s: %v", want, err)
		}
	}
	// With a key and certificates (made by the CLI) it starts.
	if code, _, e := runCLI(t, "", "cluster", "ca", "init", "--dir", filepath.Join(ws, "ca")); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := runCLI(t, "", "cluster", "ca", "issue", "n1", "--dir", filepath.Join(ws, "ca"), "--workspace", ws, "--host", "10.9.9.9"); code != 0 {
		t.Fatal(e)
	}
	for path, mode := range map[string]os.FileMode{"ca/ca.key": 0o600, "ca/gossip.key": 0o600, "cluster/node.key": 0o600, "cluster/gossip.key": 0o600, "cluster/node.crt": 0o644} {
		if got := fileMode(t, filepath.Join(ws, path)); got != mode {
			t.Errorf("%s: mode %v, want %v", path, got, mode)
		}
	}
	log := &syncBuf{}
	n = &Node{Config: cfg, Workspace: ws, Log: newTestLogger(log)}
	if err := n.Start(); err != nil {
		t.Fatalf("with key and certificate: %v", err)
	}
	n.Shutdown(ctxT(t))
	if !strings.Contains(log.String(), "mutual TLS") || !strings.Contains(log.String(), "gossip=encrypted") {
		t.Errorf("the start does not say how the ports are guarded:\n%s", log)
	}
	// cluster.insecure: starts without them, loudly.
	bare := t.TempDir()
	cfg.Cluster.Insecure = true
	log = &syncBuf{}
	n = &Node{Config: cfg, Workspace: bare, Log: newTestLogger(log)}
	if err := n.Start(); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	n.Shutdown(ctxT(t))
	if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "NOT protected") {
		t.Errorf("cluster.insecure was not logged loudly:\n%s", log)
	}
}

// secureNodes makes n cluster workspaces on loopback whose gossip key and
// certificates come from the CLI, as README's cluster example does.
func secureNodes(t *testing.T, n int) (nodes []*cnode, caDir string) {
	nodes = clusterNodes(t, n)
	caDir = filepath.Join(t.TempDir(), "ca")
	if code, _, e := runCLI(t, "", "cluster", "ca", "init", "--dir", caDir); code != 0 {
		t.Fatal(e)
	}
	for i, nd := range nodes {
		if code, _, e := runCLI(t, "", "cluster", "ca", "issue", fmt.Sprintf("n%d", i+1), "--dir", caDir, "--workspace", nd.ws, "--host", "127.0.0.1"); code != 0 {
			t.Fatal(e)
		}
	}
	return nodes, caDir
}

type clusterView struct {
	Members []struct {
		ID, Name, State string
		Verified        bool
	} `json:"members"`
}

func viewOf(url string) (clusterView, bool) {
	var v clusterView
	resp, err := http.Get(url + "/v1/admin/cluster")
	if err != nil {
		return v, false
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v) == nil
}

// reloads counts the node's "reloaded" log lines.
func (c *cnode) reloads() int {
	return strings.Count(c.p.out.String(), "cluster keys and certificates reloaded")
}

// sighupAll sends SIGHUP to every node and waits until each has reloaded.
func sighupAll(t *testing.T, nodes []*cnode) {
	t.Helper()
	for _, n := range nodes {
		before := n.reloads()
		n.p.cmd.Process.Signal(syscall.SIGHUP)
		testutil.Eventually(t, 10*time.Second, "reload on SIGHUP", func() bool { return n.reloads() > before })
	}
	if out := nodes[0].p.out.String(); strings.Contains(out, "cluster reload on SIGHUP failed") {
		t.Fatalf("a reload failed:\n%s", out)
	}
}

// Three processes over mutual TLS and an encrypted gossip: the gossip key
// and then the CA are rotated while clients keep talking, with no member
// lost and no client error but retriable ones; afterwards a node of the
// new CA joins and a node of the old one cannot.
func TestClusterProcessesSecureRotation(t *testing.T) {
	nodes, caDir := secureNodes(t, 3)
	for _, n := range nodes {
		n.start(t)
	}
	convergeProcs(t, nodes, 3)
	testutil.Eventually(t, 10*time.Second, "members verified over TLS", func() bool {
		for _, n := range nodes {
			v, ok := viewOf(n.url)
			if !ok {
				return false
			}
			for _, m := range v.Members {
				if !m.Verified || !strings.HasPrefix(m.Name, "n") {
					return false
				}
			}
		}
		return true
	})

	// Load: turns through every node, and a watch on every member's view.
	code, body := post(t, nodes[0].url+"/v1/conversations", `{}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	var conv convBody
	json.Unmarshal(body, &conv)
	var mu sync.Mutex
	bad := map[int]int{}
	var acked []string
	var ackedVia [3]int // turns acknowledged through each node
	var lost []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			msg := fmt.Sprintf("t%d", j)
			via := rng.IntN(3)
			code, _ := post(t, nodes[via].url+"/v1/conversations/"+conv.ID+"/messages", `{"content":"`+msg+`"}`)
			mu.Lock()
			if code == 200 {
				acked = append(acked, msg)
				ackedVia[via]++
			} else if code != 503 {
				bad[code]++
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, n := range nodes {
				v, ok := viewOf(n.url)
				if !ok {
					continue
				}
				for _, m := range v.Members {
					if m.State != "alive" {
						mu.Lock()
						lost = append(lost, fmt.Sprintf("%s sees %s %s", n.gossip, m.ID, m.State))
						mu.Unlock()
					}
				}
			}
		}
	}()
	// Each phase ends once every node has acknowledged a turn in it (two of
	// the three forward it to the owner over RPC): counted, not slept.
	progress := func(what string) {
		t.Helper()
		mu.Lock()
		before := ackedVia
		mu.Unlock()
		testutil.Eventually(t, 30*time.Second, "a turn acknowledged through every node "+what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for i := range ackedVia {
				if ackedVia[i] <= before[i] {
					return false
				}
			}
			return true
		})
	}
	progress("before the rotations")

	// The gossip key: add the new one, make it the one that encrypts, drop
	// the old one; a reload on every node after each step.
	oldKey, err := os.ReadFile(filepath.Join(caDir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, newKey, _ := runCLI(t, "", "cluster", "keygen")
	for step, keys := range []string{string(oldKey) + newKey, newKey + string(oldKey), newKey} {
		for _, n := range nodes {
			if err := os.WriteFile(filepath.Join(n.ws, "cluster", "gossip.key"), []byte(keys), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		sighupAll(t, nodes)
		progress(fmt.Sprintf("after gossip-key step %d", step+1))
	}

	// The CA: trust old and new, move every node to a certificate of the
	// new CA, then trust only the new one.
	newCA := filepath.Join(t.TempDir(), "ca2")
	if code, _, e := runCLI(t, "", "cluster", "ca", "init", "--dir", newCA); code != 0 {
		t.Fatal(e)
	}
	oldCert, _ := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	newCert, _ := os.ReadFile(filepath.Join(newCA, "ca.crt"))
	for _, n := range nodes {
		os.WriteFile(filepath.Join(n.ws, "cluster", "ca.crt"), append(append([]byte{}, oldCert...), newCert...), 0o644)
	}
	sighupAll(t, nodes)
	for i, n := range nodes {
		if code, _, e := runCLI(t, "", "cluster", "ca", "issue", fmt.Sprintf("n%d", i+1), "--dir", newCA, "--workspace", n.ws, "--force"); code != 0 {
			t.Fatal(e)
		}
	}
	sighupAll(t, nodes)
	for _, n := range nodes {
		os.WriteFile(filepath.Join(n.ws, "cluster", "ca.crt"), newCert, 0o644)
	}
	sighupAll(t, nodes)
	progress("under the new CA alone")
	close(stop)
	wg.Wait()

	mu.Lock()
	if len(bad) > 0 || len(lost) > 0 {
		t.Fatalf("during the rotations: errors %v, members lost %v, turns acknowledged %d", bad, lost, len(acked))
	}
	mu.Unlock()
	got := getConv(t, nodes[1].url, conv.ID)
	have := map[string]int{}
	for _, m := range got.Messages {
		if m.Role == "user" {
			have[m.Content]++
		}
	}
	for _, a := range acked {
		if have[a] != 1 {
			t.Fatalf("acknowledged turn %q stored %d times", a, have[a])
		}
	}

	// A fourth node with the new CA and key joins. One with the new key but
	// a certificate of the retired CA joins the gossip but is never
	// verified, so it holds no conversation; one with the retired key is
	// not heard at all.
	extra := clusterNodes(t, 3)
	for i, e := range extra {
		ca, key := newCA, newKey
		switch i {
		case 1:
			ca = caDir
		case 2:
			key = string(oldKey)
		}
		if code, _, out := runCLI(t, "", "cluster", "ca", "issue", fmt.Sprintf("x%d", i), "--dir", ca, "--workspace", e.ws); code != 0 {
			t.Fatal(out)
		}
		os.WriteFile(filepath.Join(e.ws, "cluster", "gossip.key"), []byte(key), 0o600)
		cfg := strings.Replace(mustRead(t, filepath.Join(e.ws, "moltbot.yaml")), "join: [", "join: [\""+nodes[0].gossip+"\", ", 1)
		os.WriteFile(filepath.Join(e.ws, "moltbot.yaml"), []byte(cfg), 0o600)
	}
	extra[0].start(t)
	convergeProcs(t, append(append([]*cnode{}, nodes...), extra[0]), 4)
	for _, e := range extra[1:] {
		e.p = startProc(t, e.args...)
	}
	member := func(v clusterView, name string) (found, verified bool) {
		for _, m := range v.Members {
			if m.Name == name {
				return true, m.Verified
			}
		}
		return false, false
	}
	testutil.Eventually(t, 10*time.Second, "the retired CA's node seen in the gossip", func() bool {
		v, _ := viewOf(nodes[0].url)
		found, _ := member(v, "x1")
		return found
	})
	// Its proof fails (at the TLS handshake, both ways) and is audited.
	var text string
	testutil.Eventually(t, 20*time.Second, "the retired CA's node refused in the audit log", func() bool {
		_, text = getBody(t, nodes[0].url+"/v1/admin/audit?limit=200")
		return strings.Contains(text, `"cluster.member_refused"`) && strings.Contains(text, "name x1")
	})
	for _, want := range []string{`"cluster.reload"`, `"cluster.member_verified"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the audit log lacks %s:\n%s", want, text)
		}
	}
	// The retired key's node tried and was refused (its own log says so)
	// before its absence is believed.
	testutil.Eventually(t, 20*time.Second, "the retired key's node refused", func() bool {
		return strings.Contains(extra[2].p.out.String(), "gossip key")
	})
	v, _ := viewOf(nodes[0].url)
	if _, verified := member(v, "x1"); verified {
		t.Fatal("a certificate of the retired CA was verified")
	}
	if found, _ := member(v, "x2"); found {
		t.Fatal("a node with the retired gossip key joined")
	}
	if found, verified := member(v, "x0"); !found || !verified {
		t.Fatalf("the new CA's node: found %v verified %v", found, verified)
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A cluster on IPv6 addresses starts and forms (protoactor joined host and
// port with a bare colon, which an IPv6 address cannot take). Separate
// processes: two nodes in one process race on gRPC's global logger.
func TestClusterIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback here")
	} else {
		ln.Close()
	}
	gossip := []string{fmt.Sprintf("[::1]:%d", freeTwin(t)), fmt.Sprintf("[::1]:%d", freeTwin(t))}
	var urls []string
	for i := 0; i < 2; i++ {
		ws := t.TempDir()
		port := testutil.FreePort(t)
		cfg := fmt.Sprintf(`server: {port: %d}
providers: [{name: sim, type: sim}]
models: {primary: sim/sim}
cluster: {bind: "%s", join: ["%s"], profile: test}
`, port, gossip[i], gossip[1-i])
		if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		startProc(t, "moltbot", "start", "--workspace", ws)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", port))
	}
	for _, u := range urls {
		waitReady(t, u)
	}
	testutil.Eventually(t, 15*time.Second, "two IPv6 members", func() bool {
		v, ok := viewOf(urls[0])
		return ok && len(v.Members) == 2 && v.Members[0].State == "alive" && v.Members[1].State == "alive"
	})
	code, body := post(t, urls[1]+"/v1/conversations", `{}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	var c convBody
	json.Unmarshal(body, &c)
	for _, u := range urls {
		if code, body := post(t, u+"/v1/conversations/"+c.ID+"/messages", `{"content":"hi"}`); code != 200 {
			t.Fatalf("a turn over IPv6: %d %s", code, body)
		}
	}
}
