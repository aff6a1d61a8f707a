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
	"github.com/moltbot/moltbot/skills/handoff"
)

// The hand-off queue across three node processes: a conversation handed
// off through one node is in the queue of every node (the index rides
// the cluster's shared state), claimed through another, answered through
// the third; its owner is killed (-9) and a survivor releases it with the
// epoch the claim gave, after which the model answers again.
func TestHandoffClusterProcesses(t *testing.T) {
	nodes := clusterNodes(t, 3)
	for _, n := range nodes {
		f, err := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(f, "handoff: {enabled: true, queue_timeout: 1h}\n")
		f.Close()
		n.start(t)
	}
	convergeProcs(t, nodes, 3)
	code, body := post(t, nodes[0].url+"/v1/conversations", `{}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	var c convBody
	json.Unmarshal(body, &c)
	code, body = post(t, nodes[1].url+"/v1/conversations/"+c.ID+"/messages", `{"content":"转人工"}`)
	if code != 200 || !strings.Contains(string(body), `"finish_reason":"handoff"`) {
		t.Fatalf("转人工: %d %s", code, body)
	}
	queueOf := func(url string) []handoff.Entry {
		_, b := getBody(t, url+"/v1/admin/handoff")
		var l struct{ Data []handoff.Entry }
		json.Unmarshal([]byte(b), &l)
		return l.Data
	}
	for _, n := range nodes {
		testutil.Eventually(t, 20*time.Second, "the queue of "+n.url+" holds the conversation", func() bool {
			q := queueOf(n.url)
			return len(q) == 1 && q[0].Conversation == c.ID && q[0].Epoch == 1 && q[0].Owner == "queue"
		})
	}
	if code, body = post(t, nodes[2].url+"/v1/admin/handoff/"+c.ID+"/claim", `{"epoch":1}`); code != 200 {
		t.Fatalf("claim via node 2: %d %s", code, body)
	}
	if code, body = post(t, nodes[0].url+"/v1/admin/handoff/"+c.ID+"/reply", `{"epoch":1,"text":"stale"}`); code != 409 {
		t.Fatalf("a stale reply via node 0: %d %s", code, body)
	}
	if code, body = post(t, nodes[0].url+"/v1/admin/handoff/"+c.ID+"/reply", `{"epoch":2,"text":"Alice here."}`); code != 200 {
		t.Fatalf("reply via node 0: %d %s", code, body)
	}
	for _, n := range nodes {
		testutil.Eventually(t, 20*time.Second, "the queue of "+n.url+" shows the claim", func() bool {
			q := queueOf(n.url)
			return len(q) == 1 && q[0].Epoch == 2 && q[0].Owner == "agent"
		})
	}
	owner := ownerOf(t, nodes[0].url, c.ID)
	var survivors []*cnode
	for _, n := range nodes {
		if n.gossip == owner {
			n.p.cmd.Process.Signal(syscall.SIGKILL)
			n.p.wait(t, 10*time.Second)
		} else {
			survivors = append(survivors, n)
		}
	}
	if len(survivors) != 2 {
		t.Fatalf("owner %q is none of the nodes", owner)
	}
	// While the agent has it, no model: the user's message is kept.
	code, body = post(t, survivors[0].url+"/v1/conversations/"+c.ID+"/messages", `{"content":"thank you"}`)
	if code != 200 || !strings.Contains(string(body), `"finish_reason":"handoff"`) {
		t.Fatalf("a turn with the agent, after the kill: %d %s", code, body)
	}
	if code, body = post(t, survivors[1].url+"/v1/admin/handoff/"+c.ID+"/release", `{"epoch":2}`); code != 200 || !strings.Contains(string(body), `"epoch":3`) {
		t.Fatalf("release via a survivor: %d %s", code, body)
	}
	code, body = post(t, survivors[0].url+"/v1/conversations/"+c.ID+"/messages", `{"content":"and now?"}`)
	if code != 200 || !strings.Contains(string(body), `"finish_reason":"stop"`) {
		t.Fatalf("after release: %d %s", code, body)
	}
	got := getConv(t, survivors[1].url, c.ID)
	var said []string
	for _, m := range got.Messages {
		said = append(said, m.Role+":"+m.Content)
	}
	all := strings.Join(said, "|")
	if strings.Count(all, "assistant:Alice here.") != 1 || !strings.Contains(all, "user:thank you") || strings.Contains(all, "stale") {
		t.Fatalf("the conversation: %s", all)
	}
}
