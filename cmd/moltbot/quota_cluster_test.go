package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

// Two node processes: a tenant's conversations are counted by the node
// that owns each, and the counts travel between the nodes, so the quota
// holds for the tenant as a whole, whichever node is asked.
func TestClusterQuota(t *testing.T) {
	nodes := clusterNodes(t, 2)
	for _, n := range nodes {
		f, _ := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprint(f, "auth: {enabled: true}\ntenants: [{id: acme, limits: {max_conversations: 4}}]\n")
		f.Close()
		if code, out, e := runCLI(t, "", "init", "--workspace", n.ws); code != 0 {
			t.Fatalf("init: %d %s %s", code, out, e)
		}
		n.start(t)
	}
	n1, n2 := nodes[0], nodes[1]
	var key string
	if code, out, e := runCLI(t, "", "keys", "create", "--workspace", n1.ws, "--tenant", "acme"); code != 0 {
		t.Fatalf("keys create: %s", e)
	} else {
		key = strings.TrimSpace(out)
	}
	testutil.Eventually(t, 20*time.Second, "the key works on both nodes", func() bool {
		c1, _ := authedGet(t, n1.url+"/v1/models", key)
		c2, _ := authedGet(t, n2.url+"/v1/models", key)
		return c1 == 200 && c2 == 200
	})
	var ids []string
	for i := 0; i < 4; i++ {
		n := nodes[i%2]
		code, body := authedDo(t, "POST", n.url+"/v1/conversations", key, `{}`)
		var c convBody
		if code != 201 || json.Unmarshal([]byte(body), &c) != nil {
			t.Fatalf("create %d via %s: %d %s", i, n.url, code, body)
		}
		ids = append(ids, c.ID)
	}
	// Both nodes hear of the four (each owns some) and refuse a fifth.
	for _, n := range nodes {
		testutil.Eventually(t, 10*time.Second, "the fifth refused via "+n.url, func() bool {
			code, body := authedDo(t, "POST", n.url+"/v1/conversations", key, `{"id":"fifth"}`)
			if code == 201 {
				authedDo(t, "DELETE", n.url+"/v1/conversations/fifth", key, "")
				return false
			}
			return code == 429 && strings.Contains(body, "has 4 conversations and may keep 4")
		})
	}
	// One deleted (through either node): a create is admitted again.
	if code, _ := authedDo(t, "DELETE", n2.url+"/v1/conversations/"+ids[0], key, ""); code != 200 {
		t.Fatal(code)
	}
	testutil.Eventually(t, 10*time.Second, "a create admitted after the delete", func() bool {
		code, _ := authedDo(t, "POST", n1.url+"/v1/conversations", key, `{}`)
		return code == 201
	})
}
