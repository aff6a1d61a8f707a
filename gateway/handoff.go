package gateway

import (
	"fmt"
	"net/http"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/manage"
)

// handoffPath is the hand-off queue's: the only path a credential of
// scope agent may use.
const handoffPath = "/v1/admin/handoff"

// handoffRequest is the body of POST /v1/admin/handoff/{conversation}/{op}.
type handoffRequest struct {
	// Epoch is the hand-off epoch the agent saw (GET /v1/admin/handoff):
	// required; a stale one is 409 naming the current one.
	Epoch *uint64 `json:"epoch"`
	// Text is the reply (reply).
	Text string `json:"text"`
	// ID makes a reply idempotent.
	ID string `json:"id"`
}

// handoffQueue serves GET /v1/admin/handoff.
func (s *Server) handoffQueue(w http.ResponseWriter, r *http.Request) {
	list, err := s.mg.HandoffQueue(principal(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": list})
}

// handoffOp serves POST /v1/admin/handoff/{conversation}/{op}: claim,
// reply, release.
func (s *Server) handoffOp(w http.ResponseWriter, r *http.Request) {
	id, op := r.PathValue("conversation"), r.PathValue("op")
	a := audited{action: "handoff." + op, target: "conversation:" + id, tenant: principal(r).Tenant}
	if op != moltbot.HandoffClaim && op != moltbot.HandoffReply && op != moltbot.HandoffRelease {
		s.fail(w, r, audited{action: "handoff", target: a.target, tenant: a.tenant},
			moltbot.Errorf(moltbot.ENotFound, "no hand-off operation %q: use claim, reply or release", op))
		return
	}
	var req handoffRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.fail(w, r, a, err)
		return
	}
	if req.Epoch == nil {
		s.fail(w, r, a, invalid("epoch", "epoch is required: the hand-off epoch the queue showed (GET %s)", handoffPath))
		return
	}
	a.detail = fmt.Sprintf("epoch=%d", *req.Epoch)
	res, err := s.mg.Handoff(r.Context(), principal(r), manage.HandoffRequest{Conversation: id, Op: op, Epoch: *req.Epoch, Text: req.Text, ID: req.ID})
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, res)
}
