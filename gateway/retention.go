package gateway

import (
	"fmt"
	"net/http"
)

// sweepRetention runs this node's retention sweep now (the operator's):
// the answer says what it did.
func (s *Server) sweepRetention(w http.ResponseWriter, r *http.Request) {
	a := audited{action: "retention.sweep", target: "conversations"}
	res, err := s.mg.SweepRetention(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.detail = fmt.Sprintf("scanned=%d deleted=%d trimmed=%d archived=%d skipped=%d errors=%d",
		res.Scanned, res.Deleted, res.Trimmed, res.Archived, res.Skipped, res.Errors)
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, res)
}
