//go:build unix

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

// Three node processes with auth: acme's admin pushes a JavaScript skill
// and a flow to node 0; a turn of acme's whose conversation node 2 owns
// runs the skill (other's identical message does not); a conversation
// waiting at the flow's collect step moves when its node is stopped and
// finishes on another; a new version pushed meanwhile reaches the
// survivors without a restart and the stopped node when it starts again;
// skills rm takes the files from every node.
func TestSkillPushCluster(t *testing.T) {
	bin := buildSkillsWorker(t)
	nodes := clusterNodes(t, 3)
	ops := make([]string, len(nodes))
	for i, n := range nodes {
		f, _ := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "auth: {enabled: true}\ntenants: [{id: acme}, {id: other}]\nskills: {worker: %s, timeout: 10s}\n", bin)
		f.Close()
		if code, out, e := runCLI(t, "", "init", "--workspace", n.ws); code != 0 {
			t.Fatalf("init: %d %s %s", code, out, e)
		}
		b, _ := os.ReadFile(filepath.Join(n.ws, "admin.key"))
		ops[i] = strings.TrimSpace(string(b))
		n.start(t)
	}
	alive := func(n *cnode, op string) int {
		_, body := authedGet(t, n.url+"/v1/admin/cluster", op)
		var st struct{ Members []struct{ State string } }
		json.Unmarshal([]byte(body), &st)
		k := 0
		for _, m := range st.Members {
			if m.State == "alive" {
				k++
			}
		}
		return k
	}
	testutil.Eventually(t, 30*time.Second, "3 members alive on every node", func() bool {
		for i, n := range nodes {
			if alive(n, ops[i]) != 3 {
				return false
			}
		}
		return true
	})
	key := func(body string) string {
		t.Helper()
		code, out := authedDo(t, "POST", nodes[0].url+"/v1/admin/keys", ops[0], body)
		var k struct{ Key string }
		json.Unmarshal([]byte(out), &k)
		if code != 201 || k.Key == "" {
			t.Fatalf("key %s: %d %s", body, code, out)
		}
		return k.Key
	}
	acmeAdmin, acme, other := key(`{"tenant":"acme","name":"adm","scope":"admin"}`), key(`{"tenant":"acme","name":"u"}`), key(`{"tenant":"other","name":"u"}`)
	testutil.Eventually(t, 20*time.Second, "the keys on every node", func() bool {
		for _, n := range nodes {
			for _, k := range []string{acmeAdmin, acme, other} {
				if code, _ := authedGet(t, n.url+"/v1/models", k); code != 200 {
					return false
				}
			}
		}
		return true
	})
	acmeFile := filepath.Join(t.TempDir(), "acme.key")
	os.WriteFile(acmeFile, []byte(acmeAdmin), 0o600)
	version := func(n *cnode) string {
		code, body := authedGet(t, n.url+"/v1/admin/skills/files", acmeAdmin)
		if code != 200 {
			return "?"
		}
		var l struct{ Version string }
		json.Unmarshal([]byte(body), &l)
		return l.Version
	}
	push := func(n *cnode, greet string) string {
		t.Helper()
		code, out, e := runCLI(t, "", "skills", "push", "--url", n.url, "--admin-key-file", acmeFile, writePushDir(t, greet))
		if code != 0 {
			t.Fatalf("push to %s: %d %s %s", n.url, code, out, e)
		}
		return version(n)
	}
	v1 := push(nodes[0], pushedGreet)
	for _, n := range nodes {
		testutil.Eventually(t, 30*time.Second, "version "+v1+" on "+n.url, func() bool { return version(n) == v1 })
	}
	create := func(n *cnode, key string) string {
		t.Helper()
		code, body := authedDo(t, "POST", n.url+"/v1/conversations", key, `{}`)
		var c convBody
		json.Unmarshal([]byte(body), &c)
		if code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		return c.ID
	}
	owner := func(n *cnode, key, id string) string {
		_, body := authedGet(t, n.url+"/v1/conversations/"+id, key)
		var c struct{ Owner string }
		json.Unmarshal([]byte(body), &c)
		return c.Owner
	}
	ownedBy := func(via, by *cnode, key string) string {
		t.Helper()
		for range 64 {
			if id := create(via, key); owner(via, key, id) == by.gossip {
				return id
			}
		}
		t.Fatalf("no conversation owned by %s", by.gossip)
		return ""
	}
	say := func(n *cnode, key, id, text string) string {
		t.Helper()
		code, body := authedDo(t, "POST", n.url+"/v1/conversations/"+id+"/messages", key, `{"content":"`+text+`"}`)
		if code != 200 {
			t.Fatalf("%s via %s: %d %s", text, n.url, code, body)
		}
		var r struct{ Message struct{ Content string } }
		json.Unmarshal([]byte(body), &r)
		return r.Message.Content
	}
	// Node 2 owns the conversation; the turn goes through node 0.
	id := ownedBy(nodes[0], nodes[2], acme)
	if got := say(nodes[0], acme, id, "greet Ann"); got != "pushed hello, Ann" {
		t.Fatalf("acme's skill on node 2: %q", got)
	}
	oid := ownedBy(nodes[0], nodes[2], other)
	if got := say(nodes[0], other, oid, "greet Ann"); strings.Contains(got, "pushed hello") {
		t.Fatalf("other runs acme's skill: %q", got)
	}
	// A conversation at the flow's collect step; its owner is stopped.
	fid := create(nodes[0], acme)
	if got := say(nodes[0], acme, fid, "where is my order"); got != "Which order? (digits)" {
		t.Fatalf("the flow's question: %q", got)
	}
	var stopped *cnode
	var survivors []*cnode
	for _, n := range nodes {
		if n.gossip == owner(nodes[0], acme, fid) {
			stopped = n
		} else {
			survivors = append(survivors, n)
		}
	}
	if stopped == nil {
		t.Fatal("no owner")
	}
	stopped.p.cmd.Process.Signal(syscall.SIGTERM)
	if code := stopped.p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("the owner exited %d", code)
	}
	if got := say(survivors[0], acme, fid, "42"); got != "order 42 is on its way (pushed hello, 42)" {
		t.Fatalf("the flow on another node: %q", got)
	}
	// A new version through a survivor, while a node is down: the other
	// survivor has it without a restart, the stopped node once it is back.
	v2 := push(survivors[1], strings.ReplaceAll(pushedGreet, "pushed hello", "pushed hi"))
	if v2 == v1 || v2 == "" {
		t.Fatalf("versions %q %q", v1, v2)
	}
	testutil.Eventually(t, 30*time.Second, "v2 on "+survivors[0].url, func() bool { return version(survivors[0]) == v2 })
	for _, n := range survivors {
		id := ownedBy(survivors[0], n, acme)
		if got := say(survivors[0], acme, id, "greet Bo"); got != "pushed hi, Bo" {
			t.Fatalf("v2 on %s: %q", n.url, got)
		}
	}
	stopped.start(t)
	testutil.Eventually(t, 60*time.Second, "the restarted node gets v2", func() bool { return version(stopped) == v2 })
	testutil.Eventually(t, 30*time.Second, "3 members alive again", func() bool { return alive(nodes[0], ops[0]) == 3 })
	id = ownedBy(nodes[0], stopped, acme)
	if got := say(nodes[0], acme, id, "greet Cy"); got != "pushed hi, Cy" {
		t.Fatalf("v2 on the restarted node: %q", got)
	}
	// skills rm through one node removes the files from every node.
	if code, out, e := runCLI(t, "", "skills", "rm", "--url", stopped.url, "--admin-key-file", acmeFile, "greet.js", "flows/order.yaml"); code != 0 {
		t.Fatalf("rm: %d %s %s", code, out, e)
	}
	for _, n := range nodes {
		testutil.Eventually(t, 30*time.Second, "no files on "+n.url, func() bool { return version(n) == "" })
	}
	for _, n := range nodes {
		id := ownedBy(nodes[0], n, acme)
		if got := say(nodes[0], acme, id, "greet Di"); strings.Contains(got, "pushed") {
			t.Fatalf("after rm, on %s: %q", n.url, got)
		}
	}
}
