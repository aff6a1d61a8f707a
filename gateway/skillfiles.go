package gateway

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/manage"
)

// Tenants' pushed skills (manage/skillfiles.go). A tenant's admin pushes
// its own tenant's; the operator names another with ?tenant= (or
// "tenant" in a POST body).
//
//	GET    /v1/admin/skills/files              the tenant's files (no text), their version
//	POST   /v1/admin/skills/files              put and remove files in one change: {"files": [{"path", "source"}], "remove": [...], "replace"?, "if_version"?, "tenant"?}
//	GET    /v1/admin/skills/files/{path...}    one file, with its text
//	PUT    /v1/admin/skills/files/{path...}    put one file: {"source", "tenant"?}; If-Match: the version expected
//	DELETE /v1/admin/skills/files/{path...}    remove one file
//
// A change is checked whole by the node's loaders (JavaScript, RE2
// patterns, flows) before it is written: one that would not load is
// refused with 400 naming the file, its line and key, and nothing of it
// is written.

// MaxSkillFilesBody bounds a POST body: a tenant's files are at most 1
// MiB together, JSON escaping may double that.
const MaxSkillFilesBody = 4 << 20

// MaxSkillFileBody bounds a PUT body: one file (skills.MaxPushedFile,
// 256 KiB, checked on its text) as a JSON string, escaping included.
const MaxSkillFileBody = 2 << 20

const skillFilesPath = "/v1/admin/skills/files"

func (s *Server) skillFileRoutes(mux *http.ServeMux) {
	mux.HandleFunc(skillFilesPath, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET", "HEAD":
			s.skillFilesList(w, r)
		case "POST":
			s.skillFilesPush(w, r)
		default:
			methodNotAllowed(w, r, "GET", "POST")
		}
	})
	mux.HandleFunc(skillFilesPath+"/{path...}", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET", "HEAD":
			s.skillFileGet(w, r)
		case "PUT":
			s.skillFilePut(w, r)
		case "DELETE":
			s.skillFileDelete(w, r)
		default:
			methodNotAllowed(w, r, "GET", "PUT", "DELETE")
		}
	})
}

func (s *Server) skillFilesList(w http.ResponseWriter, r *http.Request) {
	list, err := s.mg.SkillFilesList(principal(r), r.URL.Query().Get("tenant"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) skillFileGet(w http.ResponseWriter, r *http.Request) {
	f, err := s.mg.SkillFileGet(principal(r), r.URL.Query().Get("tenant"), r.PathValue("path"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// skillFilesBody is POST /v1/admin/skills/files's body.
type skillFilesBody struct {
	Tenant string `json:"tenant"`
	Files  []struct {
		Path   string `json:"path"`
		Source string `json:"source"`
	} `json:"files"`
	Remove  []string `json:"remove"`
	Replace bool     `json:"replace"`
	// IfVersion: the version the files must be at ("": none yet), else
	// 409; absent: any.
	IfVersion *string `json:"if_version"`
}

func (s *Server) skillFilesPush(w http.ResponseWriter, r *http.Request) {
	var body skillFilesBody
	a := audited{action: "skills.push", target: "skills"}
	if err := s.decodeKB(w, r, &body, MaxSkillFilesBody); err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.tenant = body.Tenant
	put := make([]manage.SkillFile, len(body.Files))
	n := 0
	for i, f := range body.Files {
		put[i] = manage.SkillFile{Path: f.Path, Source: f.Source}
		n += len(f.Source)
	}
	a.detail = fmt.Sprintf("%d files put (%d bytes), %d removed, replace %v", len(put), n, len(body.Remove), body.Replace)
	s.pushSkillFiles(w, r, a, body.Tenant, manage.SkillFilesChange{Put: put, Remove: body.Remove, Replace: body.Replace, IfVersion: body.IfVersion})
}

// ifMatch is a PUT's or DELETE's If-Match header as the version the
// files must be at (a quoted or bare version; nil: absent).
func ifMatch(r *http.Request) *string {
	v, ok := r.Header["If-Match"]
	if !ok || len(v) == 0 {
		return nil
	}
	s := strings.Trim(strings.TrimSpace(v[0]), `"`)
	return &s
}

func (s *Server) pushSkillFiles(w http.ResponseWriter, r *http.Request, a audited, tenant string, c manage.SkillFilesChange) {
	list, err := s.mg.SkillFilesPush(r.Context(), principal(r), tenant, c)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.detail += ", version " + list.Version
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, list)
}

// skillFilePut answers PUT /v1/admin/skills/files/{path...} {"source",
// "tenant"?} (a JSON body, as every state-changing call's: a browser's
// form cannot send one without a preflight).
func (s *Server) skillFilePut(w http.ResponseWriter, r *http.Request) {
	path, tenant := r.PathValue("path"), r.URL.Query().Get("tenant")
	a := audited{action: "skills.push", target: "skills/" + path, tenant: tenant}
	var body struct {
		Source string `json:"source"`
		Tenant string `json:"tenant"`
	}
	if err := s.decodeKB(w, r, &body, MaxSkillFileBody); err != nil {
		s.fail(w, r, a, err)
		return
	}
	if body.Tenant != "" {
		if tenant != "" && tenant != body.Tenant {
			s.fail(w, r, a, invalid("tenant", "?tenant=%s and the body's tenant %s differ", tenant, body.Tenant))
			return
		}
		tenant, a.tenant = body.Tenant, body.Tenant
	}
	if strings.TrimSpace(body.Source) == "" {
		s.fail(w, r, a, &moltbot.Error{Code: moltbot.EInvalid, Param: path, Message: path + ": source is empty (remove a file with DELETE)"})
		return
	}
	a.detail = fmt.Sprintf("1 file put (%d bytes)", len(body.Source))
	s.pushSkillFiles(w, r, a, tenant, manage.SkillFilesChange{Put: []manage.SkillFile{{Path: path, Source: body.Source}}, IfVersion: ifMatch(r)})
}

func (s *Server) skillFileDelete(w http.ResponseWriter, r *http.Request) {
	path, tenant := r.PathValue("path"), r.URL.Query().Get("tenant")
	a := audited{action: "skills.rm", target: "skills/" + path, tenant: tenant, detail: "1 file removed"}
	s.pushSkillFiles(w, r, a, tenant, manage.SkillFilesChange{Remove: []string{path}, IfVersion: ifMatch(r)})
}
