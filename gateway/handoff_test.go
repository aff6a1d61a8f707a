package gateway

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	neturl "net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/manage"
)

// fakeQueue is the hand-off queue as the management service sees it: the
// operations it was asked, a conflict unless the epoch is 1.
type fakeQueue struct {
	mu  sync.Mutex
	ops []moltbot.TurnInput
}

func (q *fakeQueue) List(space string) []manage.HandoffEntry {
	return []manage.HandoffEntry{{Space: space, Conversation: "c1", Owner: "queue", Epoch: 1}}
}

func (q *fakeQueue) Operate(ctx context.Context, space, id string, in moltbot.TurnInput) (*moltbot.TurnResult, error) {
	q.mu.Lock()
	q.ops = append(q.ops, in)
	q.mu.Unlock()
	if in.Handoff.Epoch != 1 {
		return nil, &moltbot.Error{Code: moltbot.EConflict, Param: "epoch", Message: "stale epoch: the conversation's hand-off epoch is 1"}
	}
	return &moltbot.TurnResult{Message: moltbot.Message{Role: moltbot.RoleAssistant, Content: in.Handoff.Text}}, nil
}

func handoffServer(t testing.TB) (string, *fakeQueue) {
	e := setup(t, []string{"sim/sim"})
	q := &fakeQueue{}
	c := chat.New(e.rt, nil, chat.Config{MaxMessageBytes: 2048, Metrics: e.met})
	srv := httptest.NewServer(New(c, manage.New(manage.Config{Runtime: e.rt, Handoff: q}), Config{MaxBodyBytes: 4096, Metrics: e.met, Version: "test"}))
	t.Cleanup(srv.Close)
	return srv.URL, q
}

func TestHandoffEndpoints(t *testing.T) {
	url, q := handoffServer(t)
	resp, b := do(t, "GET", url+"/v1/admin/handoff", "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"conversation":"c1"`) {
		t.Fatalf("list: %d %s", resp.StatusCode, b)
	}
	for _, c := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/c1/claim", `{"epoch":1}`, 200, `"epoch":2`},
		{"/c1/claim", `{"epoch":7}`, 409, `epoch is 1`},
		{"/c1/claim", `{}`, 400, `epoch is required`},
		{"/c1/claim", `{"epoch":-1}`, 400, `epoch`},
		{"/c1/claim", `{"epoch":1}{}`, 400, `more than one`},
		{"/c1/reply", `{"epoch":1}`, 400, `text is required`},
		{"/c1/reply", `{"epoch":1,"text":"hi","id":"bad id!"}`, 400, `"param":"id"`},
		{"/c1/reply", `{"epoch":1,"text":"hi","id":"r-1"}`, 200, `"content":"hi"`},
		{"/c1/release", `{"epoch":1}`, 200, `"owner":"bot"`},
		{"/c1/dance", `{"epoch":1}`, 404, `claim, reply or release`},
		{"/c1/claim", strings.Repeat(" ", 5000) + `{"epoch":1}`, 413, ``},
	} {
		resp, b := do(t, "POST", url+"/v1/admin/handoff"+c.path, c.body)
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.want) || !json.Valid(b) {
			t.Errorf("%s %.40q: %d %s", c.path, c.body, resp.StatusCode, b)
		}
	}
	if resp, _ := do(t, "GET", url+"/v1/admin/handoff/c1/claim", ""); resp.StatusCode != 405 {
		t.Errorf("GET claim: %d", resp.StatusCode)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ops) != 4 || q.ops[2].ExternalID != "agent:r-1" || q.ops[0].Handoff.Agent != "operator" {
		t.Fatalf("ops %+v", q.ops)
	}
}

// FuzzHandoffRequest sends arbitrary bodies to the operations: every
// answer is JSON and never a 5xx; what reaches the queue is a known
// operation with bounded text.
func FuzzHandoffRequest(f *testing.F) {
	f.Add("claim", `{"epoch":1}`)
	f.Add("reply", `{"epoch":1,"text":"hello","id":"x"}`)
	f.Add("release", `{"epoch":18446744073709551615}`)
	f.Add("reply", `{"epoch":1,"text":null}`)
	url, q := handoffServer(f)
	f.Fuzz(func(t *testing.T, op, body string) {
		if op == "" || op == "." || op == ".." {
			return // the mux cleans the path (a redirect)
		}
		resp, b := do(t, "POST", url+"/v1/admin/handoff/c1/"+neturl.PathEscape(op), body)
		if resp.StatusCode >= 500 || !json.Valid(b) {
			t.Fatalf("%q %q: %d %s", op, body, resp.StatusCode, b)
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, in := range q.ops {
			if o := in.Handoff.Op; o != moltbot.HandoffClaim && o != moltbot.HandoffReply && o != moltbot.HandoffRelease || len(in.Handoff.Text) > moltbot.MaxHandoffText {
				t.Fatalf("the queue got %+v", in.Handoff)
			}
		}
		q.ops = q.ops[:0]
	})
}
