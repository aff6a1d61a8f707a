package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/manage"
)

// The knowledge bases' admin endpoints (manage/kb.go). A tenant's admin
// manages its own tenant's knowledge bases; the operator names another
// with ?tenant= (or "tenant" in a POST body).
//
//	GET    /v1/admin/kb                         the tenant's knowledge bases
//	GET    /v1/admin/kb/{kb}                    one, with its documents
//	DELETE /v1/admin/kb/{kb}                    every document of it
//	POST   /v1/admin/kb/{kb}/documents          add or replace documents
//	DELETE /v1/admin/kb/{kb}/documents/{doc...} one document
//	POST   /v1/admin/kb/{kb}/search             search it as a bot would

// MaxKBBody bounds a POST /v1/admin/kb/{kb}/documents body: a document is
// at most 512 KiB (one cluster change), and `moltbot kb add` sends
// documents in batches under this.
const MaxKBBody = 4 << 20

// MaxKBDocsPerRequest bounds the documents of one request.
const MaxKBDocsPerRequest = 200

func (s *Server) kbRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/v1/admin/kb", s.only("GET", s.kbList))
	mux.HandleFunc("/v1/admin/kb/{kb}", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET", "HEAD":
			s.kbList(w, r)
		case "DELETE":
			s.kbDelete(w, r)
		default:
			methodNotAllowed(w, r, "GET", "DELETE")
		}
	})
	mux.HandleFunc("/v1/admin/kb/{kb}/documents", s.only("POST", s.kbAdd))
	mux.HandleFunc("/v1/admin/kb/{kb}/documents/{doc...}", s.only("DELETE", s.kbDelete))
	mux.HandleFunc("/v1/admin/kb/{kb}/search", s.only("POST", s.kbSearch))
}

// kbList answers GET /v1/admin/kb and GET /v1/admin/kb/{kb}.
func (s *Server) kbList(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("kb")
	list, err := s.mg.KBList(principal(r), r.URL.Query().Get("tenant"), name)
	if err != nil {
		writeError(w, err)
		return
	}
	if name != "" {
		if len(list) == 0 {
			writeError(w, moltbot.Errorf(moltbot.ENotFound, "knowledge base %q not found", name))
			return
		}
		writeJSON(w, http.StatusOK, list[0])
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "knowledge_bases": list})
}

// kbDocs is the body of POST /v1/admin/kb/{kb}/documents.
type kbDocs struct {
	Tenant    string `json:"tenant"`
	Documents []struct {
		Name string `json:"name"`
		Text string `json:"text"`
	} `json:"documents"`
}

// decodeKB reads a knowledge-base request's body, bounded by limit:
// unknown fields are refused (a typo is not dropped).
func (s *Server) decodeKB(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	buf, err := readBody(http.MaxBytesReader(w, r.Body, limit), nil)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &moltbot.Error{Code: moltbot.ETooLarge, Message: fmt.Sprintf("the request body is larger than %d bytes: send fewer documents at a time", mbe.Limit)}
		}
		return s.decodeError(err, false)
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return invalid("", "the request body is empty; send a JSON object")
		}
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se), errors.As(err, &te):
			return s.decodeError(err, false)
		}
		return invalid("", "%v", err) // an unknown field: json names it
	}
	if dec.More() {
		return invalid("", "the body holds more than one JSON value")
	}
	return nil
}

// kbAdd answers POST /v1/admin/kb/{kb}/documents
// {"documents": [{"name", "text"}], "tenant"?}.
func (s *Server) kbAdd(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("kb")
	var body kbDocs
	a := audited{action: "kb.add", target: "kb:" + name}
	if err := s.decodeKB(w, r, &body, MaxKBBody); err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.tenant = body.Tenant
	if len(body.Documents) > MaxKBDocsPerRequest {
		s.fail(w, r, a, &moltbot.Error{Code: moltbot.ETooLarge, Param: "documents",
			Message: fmt.Sprintf("%d documents in one request; at most %d", len(body.Documents), MaxKBDocsPerRequest)})
		return
	}
	docs := make([]manage.KBDoc, len(body.Documents))
	bytes := 0
	for i, d := range body.Documents {
		docs[i] = manage.KBDoc{Name: d.Name, Text: d.Text}
		bytes += len(d.Text)
	}
	a.detail = fmt.Sprintf("%d documents, %d bytes", len(docs), bytes)
	if err := s.mg.KBAdd(principal(r), body.Tenant, name, docs); err != nil {
		s.fail(w, r, a, err)
		return
	}
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, map[string]any{"kb": name, "added": len(docs)})
}

// kbDelete answers DELETE /v1/admin/kb/{kb} (every document) and DELETE
// /v1/admin/kb/{kb}/documents/{doc...}.
func (s *Server) kbDelete(w http.ResponseWriter, r *http.Request) {
	name, doc := r.PathValue("kb"), r.PathValue("doc")
	tenant := r.URL.Query().Get("tenant")
	a := audited{action: "kb.delete", target: "kb:" + name, tenant: tenant}
	if doc != "" {
		a.target += "/" + doc
	}
	n, err := s.mg.KBDelete(principal(r), tenant, name, doc)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.detail = strconv.Itoa(n) + " documents"
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, map[string]any{"kb": name, "deleted": n})
}

// kbSearch answers POST /v1/admin/kb/{kb}/search {"query", "k"?, "tenant"?}.
func (s *Server) kbSearch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Query  string `json:"query"`
		K      int    `json:"k"`
		Tenant string `json:"tenant"`
	}
	if err := s.decodeKB(w, r, &body, 64<<10); err != nil {
		writeError(w, err)
		return
	}
	res, err := s.mg.KBSearch(principal(r), body.Tenant, r.PathValue("kb"), body.Query, body.K)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// appendCitations adds the extension field "citations" to the JSON
// object that ends b (a chat.completion, or a stream's finish chunk):
// the sources the reply drew on (moltbot.Citation). Nothing without any.
func appendCitations(b []byte, cites []moltbot.Citation) []byte {
	if len(cites) == 0 || len(b) == 0 || b[len(b)-1] != '}' {
		return b
	}
	js, err := json.Marshal(cites)
	if err != nil {
		return b
	}
	b = append(b[:len(b)-1], `,"citations":`...)
	b = append(b, js...)
	return append(b, '}')
}
