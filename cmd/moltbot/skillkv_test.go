package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

// askURL sends msg to the chat API at url: the reply's text.
func askURL(t *testing.T, url, msg string) string {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"moltbot","messages":[{"role":"user","content":"`+msg+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
		t.Fatalf("%s: %d %s", msg, resp.StatusCode, b)
	}
	return out.Choices[0].Message.Content
}

// A skill's context.kv records are the cluster's: a key set through one
// node is read through the other, and a deletion reaches it too.
func TestClusterSkillKV(t *testing.T) {
	bin := buildSkillsWorker(t)
	nodes := clusterNodes(t, 2)
	for _, n := range nodes {
		f, _ := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "skills: {worker: %s}\n", bin)
		f.Close()
		os.MkdirAll(filepath.Join(n.ws, "skills"), 0o755)
		writeSkill(t, n.ws, "note.js", "module.exports = {name: 'note', patterns: [/^(set|get|del) ?(.*)$/], handler: async (c) => {\n"+
			"  const op = String(c.matches[1]), v = String(c.matches[2]);\n"+
			"  if (op === 'set') { await c.kv.set('note', v); return 'ok' }\n"+
			"  if (op === 'del') { await c.kv.delete('note'); return 'gone' }\n"+
			"  return 'note=' + (await c.kv.get('note')) }};\n")
		n.start(t)
	}
	n1, n2 := nodes[0], nodes[1]
	testutil.Eventually(t, 20*time.Second, "the nodes meet", func() bool { return members(t, n1.url) == 2 && members(t, n2.url) == 2 })
	if got := askURL(t, n1.url, "set remember me"); got != "ok" {
		t.Fatalf("set: %q", got)
	}
	testutil.Eventually(t, 10*time.Second, "the record reaches node 2", func() bool {
		return askURL(t, n2.url, "get") == "note=remember me"
	})
	if got := askURL(t, n2.url, "del"); got != "gone" {
		t.Fatalf("del: %q", got)
	}
	testutil.Eventually(t, 10*time.Second, "the deletion reaches node 1", func() bool {
		return askURL(t, n1.url, "get") == "note=undefined"
	})
}

// A database of a release that kept context.kv per node (storage.Skills,
// with a count of keys under "#") has its records moved to the
// replicated namespace when the node opens it.
func TestSkillKVMovesOldRecords(t *testing.T) {
	mem := storage.NewMemory()
	old := mem.Namespace(storage.Skills)
	old.Put("default\x00note\x00k", []byte("v"))
	old.Put("#default\x00note", []byte("1"))
	set, err := openSkillKV(mem)
	if err != nil {
		t.Fatal(err)
	}
	if v, found, _ := set.Get("default\x00note\x00k"); !found || !bytes.Equal(v, []byte("v")) {
		t.Fatalf("moved record: %q %v", v, found)
	}
	if _, found, _ := set.Get("#default\x00note"); found {
		t.Error("the old key count was moved")
	}
	left := 0
	old.Scan(func(string, []byte) bool { left++; return true })
	if left != 0 {
		t.Errorf("%d records left in the old namespace", left)
	}
}
