package chat

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

// CompleteWhole gives what Complete and Wait give for a completion that
// does not stream: the same result, charged once, and the same refusals
// (an agent's credential, bad messages, a model the tenant may not use, a
// spent budget), without a Stream.
func TestCompleteWholeAsCompleteAndWait(t *testing.T) {
	ctx := context.Background()
	hi := []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}
	agent := tenantA()
	agent.Scope = moltbot.ScopeAgent
	for _, c := range []struct {
		name string
		p    *moltbot.Principal
		req  CompletionRequest
		pol  *fakePolicy
	}{
		{"ok", tenantA(), CompletionRequest{Messages: hi}, &fakePolicy{calls: -1}},
		{"ok, asked to stream", tenantA(), CompletionRequest{Messages: hi, Stream: true}, &fakePolicy{calls: -1}},
		{"agent", agent, CompletionRequest{Messages: hi}, &fakePolicy{calls: -1}},
		{"no messages", tenantA(), CompletionRequest{}, &fakePolicy{calls: -1}},
		{"bad role", tenantA(), CompletionRequest{Messages: []moltbot.Message{{Role: "robot", Content: "x"}}}, &fakePolicy{calls: -1}},
		{"model not allowed", tenantA(), CompletionRequest{Messages: hi, Options: moltbot.ChatOptions{Model: "p/big"}},
			&fakePolicy{calls: -1, models: map[string][]string{"a": {"p/m"}}}},
		{"unknown model", tenantA(), CompletionRequest{Messages: hi, Options: moltbot.ChatOptions{Model: "q/x"}}, &fakePolicy{calls: -1}},
		{"no calls left", tenantA(), CompletionRequest{Messages: hi}, &fakePolicy{calls: 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			whole, werr := New(newFake(), c.pol, Config{}).CompleteWhole(ctx, c.p, c.req)
			charged := c.pol.charged
			c.pol.charged, c.pol.calls = 0, map[bool]int{true: -1, false: 0}[c.pol.calls != 0]
			req := c.req
			req.Stream = false // Complete's way that does not stream, for the comparison
			var want *moltbot.TurnResult
			st, err := New(newFake(), c.pol, Config{}).Complete(ctx, c.p, req)
			if err == nil {
				want, err = st.Wait()
			}
			if moltbot.ErrorCode(werr) != moltbot.ErrorCode(err) || (werr == nil) != (err == nil) {
				t.Fatalf("CompleteWhole: %v; Complete and Wait: %v", werr, err)
			}
			if err == nil && !reflect.DeepEqual(whole, want) {
				t.Fatalf("CompleteWhole %+v\nComplete and Wait %+v", whole, want)
			}
			if ok := strings.HasPrefix(c.name, "ok"); ok != (werr == nil) || ok && charged == 0 {
				t.Fatalf("CompleteWhole: %v, charged %d", werr, charged)
			}
			if charged != c.pol.charged {
				t.Fatalf("charged %d, Complete and Wait %d", charged, c.pol.charged)
			}
		})
	}
}
