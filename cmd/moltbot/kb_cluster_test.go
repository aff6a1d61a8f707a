package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

// kbSearch asks a node's admin API for knowledge base support's chunks
// (the documents of the first four).
func kbSearch(t *testing.T, url, query string) (docs []string, ok bool) {
	code, body := post(t, url+"/v1/admin/kb/support/search", fmt.Sprintf(`{"query":%q}`, query))
	if code != 200 {
		return nil, false
	}
	var res struct {
		Hit     bool
		Results []struct{ Document string }
	}
	if json.Unmarshal(body, &res) != nil {
		return nil, false
	}
	for _, r := range res.Results {
		docs = append(docs, r.Document)
	}
	return docs, res.Hit
}

// Three node processes: documents added on one (with moltbot kb add)
// answer searches and cite their sources on the others; a removal reaches
// all; a node killed while documents change catches up when it comes back.
func TestKBCluster(t *testing.T) {
	nodes := clusterNodes(t, 3)
	for _, n := range nodes {
		f, _ := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprint(f, "skills: {kb: {default: [support]}}\n")
		f.Close()
		n.start(t)
	}
	convergeProcs(t, nodes, 3)
	docs := filepath.Join("..", "..", "examples", "kb", "lumen")
	if code, out, e := runCLI(t, "", "kb", "add", "--url", nodes[0].url, "support", docs); code != 0 {
		t.Fatalf("kb add: %d %s %s", code, out, e)
	}
	for _, n := range nodes[1:] {
		testutil.Eventually(t, 20*time.Second, "the documents on "+n.url, func() bool {
			d, hit := kbSearch(t, n.url, "How much does express delivery cost?")
			return hit && len(d) > 0 && d[0] == "shipping.md"
		})
		code, body := post(t, n.url+"/v1/chat/completions", `{"model":"moltbot","messages":[{"role":"user","content":"可以用支付宝付款吗"}]}`)
		if code != 200 || !strings.Contains(string(body), `"citations":[{"n":1,"kb":"support","document":"zh-账户与支付.md"`) {
			t.Fatalf("a completion on %s: %d %s", n.url, code, body)
		}
	}
	// Node 2 dies; meanwhile a document goes and another comes.
	victim := nodes[2]
	victim.p.cmd.Process.Signal(syscall.SIGKILL)
	victim.p.wait(t, 10*time.Second)
	if code, out, e := runCLI(t, "", "kb", "rm", "--url", nodes[0].url, "support", "shipping.md"); code != 0 || !strings.Contains(out, "removed 1") {
		t.Fatalf("kb rm: %d %s %s", code, out, e)
	}
	extra := filepath.Join(t.TempDir(), "loyalty.md")
	os.WriteFile(extra, []byte("# Loyalty\n\n## Birthday gift\n\nMembers get a birthday voucher worth $15 every year.\n"), 0o600)
	if code, out, e := runCLI(t, "", "kb", "add", "--url", nodes[1].url, "support", extra); code != 0 {
		t.Fatalf("kb add on node 1: %d %s %s", code, out, e)
	}
	gone := func(url string) bool {
		d, _ := kbSearch(t, url, "How much does express delivery cost?")
		for _, x := range d {
			if x == "shipping.md" {
				return false
			}
		}
		d, hit := kbSearch(t, url, "birthday voucher")
		return hit && len(d) > 0 && d[0] == "loyalty.md"
	}
	for _, n := range nodes[:2] {
		testutil.Eventually(t, 20*time.Second, "the removal and the new document on "+n.url, func() bool { return gone(n.url) })
	}
	victim.start(t)
	testutil.Eventually(t, 30*time.Second, "the restarted node catches up", func() bool { return gone(victim.url) })
	if code, out, e := runCLI(t, "", "kb", "list", "--url", victim.url); code != 0 || !strings.Contains(out, "support         10 ") {
		t.Fatalf("kb list on the restarted node: %d %q %s", code, out, e)
	}
}
