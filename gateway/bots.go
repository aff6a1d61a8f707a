package gateway

import "net/http"

// bots answers GET /v1/admin/bots: the config's bots an admin may see (its
// tenant's; the operator's: every tenant's, or ?tenant=ID's).
func (s *Server) bots(w http.ResponseWriter, r *http.Request) {
	list, err := s.mg.Bots(principal(r), r.URL.Query().Get("tenant"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "bots": list})
}

// bot answers GET /v1/admin/bots/{name}.
func (s *Server) bot(w http.ResponseWriter, r *http.Request) {
	b, err := s.mg.Bot(principal(r), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}
