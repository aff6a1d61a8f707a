package flow

import (
	"context"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

const tenantFlow = `flow: hello
nodes:
  - {id: start, type: trigger, with: {keywords: [hello]}}
  - {id: ask, type: collect, with: {var: who, prompt: "%s: who are you?"}}
  - {id: done, type: reply, with: {text: "%s: hi {{who}}"}}
edges:
  - [start, ask]
  - [ask, done]
`

func helloFlow(t *testing.T, file, tag string) *Flow {
	t.Helper()
	f, err := Parse(file, []byte(strings.ReplaceAll(tenantFlow, "%s", tag)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A tenant's own flows start for its turns only, before the workspace's;
// one of the same name takes the workspace's place for that tenant; a
// conversation inside a tenant's flow finishes it on its version after
// the tenant's flows changed or went.
func TestTenantFlows(t *testing.T) {
	s := NewStage(nil, nil)
	s.Swap(&Set{Flows: []*Flow{helloFlow(t, "skills/flows/hello.yaml", "workspace")}})
	own := map[string]*Set{"acme": {Flows: []*Flow{helloFlow(t, "flows/hello.yaml", "acme")}}}
	s.SetTenants(func(t *moltbot.Turn) *Set { return own[t.Tenant] }, func() bool { return len(own) > 0 })
	say := func(tenant string, c *conversation, text string) string {
		t.Helper()
		turn := &moltbot.Turn{Space: tenant, Tenant: tenant, Conversation: "c", State: c.state,
			Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: text}}}
		comp, _, err := s.Run(context.Background(), turn)
		if err != nil {
			t.Fatal(err)
		}
		if turn.StateChanged() {
			c.state = turn.State
		}
		if comp == nil {
			return ""
		}
		return comp.Content
	}
	var a, b conversation
	if got := say("acme", &a, "hello"); got != "acme: who are you?" {
		t.Fatalf("acme: %q", got)
	}
	if got := say("other", &b, "hello"); got != "workspace: who are you?" {
		t.Fatalf("other: %q", got)
	}
	// acme's flows go; its conversation finishes on the version it began.
	delete(own, "acme")
	if got := say("acme", &a, "Ann"); got != "acme: hi Ann" {
		t.Fatalf("acme after its flows went: %q", got)
	}
	var a2 conversation
	if got := say("acme", &a2, "hello"); got != "workspace: who are you?" {
		t.Fatalf("a new acme conversation: %q", got)
	}
	if s.Idle() {
		t.Fatal("idle with workspace flows")
	}
	s.Swap(nil)
	if !s.Idle() {
		t.Fatal("not idle with no flow anywhere")
	}
	own["x"] = &Set{}
	if s.Idle() {
		t.Fatal("idle while a tenant has flows")
	}
}

// Flows given whole (a tenant's push) are checked as a directory's:
// errors name the file, the line and the key; a name is unique; size.
func TestFromSources(t *testing.T) {
	good := []byte(strings.ReplaceAll(tenantFlow, "%s", "x"))
	set, err := FromSources([]Source{{File: "flows/a.yaml", Src: good}}, nil)
	if err != nil || len(set.Flows) != 1 || set.Flows[0].File != "flows/a.yaml" {
		t.Fatalf("%v %+v", err, set)
	}
	_, err = FromSources([]Source{{File: "flows/a.yaml", Src: good}, {File: "flows/b.yaml", Src: good}}, nil)
	if err == nil || !strings.Contains(err.Error(), `flows/b.yaml: flow "hello" is also the name of the flow in flows/a.yaml`) {
		t.Fatalf("two of one name: %v", err)
	}
	bad := []byte(strings.Replace(string(good), "{keywords: [hello]}", "{patterns: [\"(?<=a)b\"]}", 1))
	_, err = FromSources([]Source{{File: "flows/bad.yaml", Src: bad}}, nil)
	if err == nil || !strings.Contains(err.Error(), "flows/bad.yaml:3: nodes[0] (start).with.patterns") {
		t.Fatalf("a bad pattern: %v", err)
	}
	skill := []byte("flow: s\nnodes:\n  - {id: t, type: trigger, with: {keywords: [s]}}\n  - {id: k, type: skill, with: {skill: nope}}\nedges:\n  - [t, k]\n")
	_, err = FromSources([]Source{{File: "flows/s.yaml", Src: skill}}, func(n string) bool { return n == "yes" })
	if err == nil || !strings.Contains(err.Error(), `flows/s.yaml:4: `) || !strings.Contains(err.Error(), `no skill "nope"`) {
		t.Fatalf("an unknown skill: %v", err)
	}
	_, err = FromSources([]Source{{File: "flows/big.yaml", Src: make([]byte, MaxFile+1)}}, nil)
	if err == nil || !strings.Contains(err.Error(), "a flow is at most") {
		t.Fatalf("big: %v", err)
	}
}
