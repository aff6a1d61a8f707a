package manage

import (
	"strconv"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/skills/kb"
)

// The knowledge bases' management: a tenant's admin manages its own
// tenant's, the operator any tenant's (tenant "" is the caller's own).
// Documents are kept by the tenant's space (its id and incarnation), so a
// tenant deleted and made again starts with none.

// KBDoc is a document to add.
type KBDoc = kb.Doc

// KBInfo describes a knowledge base.
type KBInfo = kb.BaseInfo

// KBSearchResult is what a search found: Hit when the best match's
// Coverage reaches the stage's threshold, and the chunks as citations.
type KBSearchResult struct {
	Hit       bool               `json:"hit"`
	Coverage  float64            `json:"coverage"`
	Threshold float64            `json:"threshold"`
	Results   []moltbot.Citation `json:"results"`
}

// KB is the node's knowledge bases (*kb.Store) and the stage's threshold
// (read at each search: a reload changes it).
type KB struct {
	Store     *kb.Store
	Threshold func() float64
}

func (s *Service) needKB() error {
	if s.cfg.KB == nil || s.cfg.KB.Store == nil {
		return moltbot.Errorf(moltbot.ENotFound, "this node has no knowledge bases")
	}
	return nil
}

// kbSpace is the space whose knowledge bases p may manage for tenant.
func (s *Service) kbSpace(p *moltbot.Principal, tenant string) (string, error) {
	if err := requireAdmin(p); err != nil {
		return "", err
	}
	if err := s.needKB(); err != nil {
		return "", err
	}
	return s.adminSpace(p, tenant, "knowledge bases")
}

// adminSpace is the space of tenant whose what p (an admin) may manage:
// p's own, or for the operator any tenant's current space (tenant ""
// is p's own).
func (s *Service) adminSpace(p *moltbot.Principal, tenant, what string) (string, error) {
	t, ok := scopeTenant(p, tenant)
	if !ok {
		return "", moltbot.Errorf(moltbot.EForbidden, "a tenant's admin may manage only its own tenant's %s", what)
	}
	if t == "" || t == p.Tenant {
		return p.Space, nil
	}
	if s.auth == nil {
		return t, nil
	}
	rec, found := s.auth.Tenant(t)
	if !found || rec.Deleted != 0 {
		return "", &moltbot.Error{Code: moltbot.ENotFound, Param: "tenant", Message: "tenant " + quote(t) + " not found"}
	}
	return rec.Space(), nil
}

// KBList lists the knowledge bases of tenant (name "": all of them).
func (s *Service) KBList(p *moltbot.Principal, tenant, name string) ([]KBInfo, error) {
	space, err := s.kbSpace(p, tenant)
	if err != nil {
		return nil, err
	}
	return s.cfg.KB.Store.List(space, name), nil
}

// KBAdd stores docs in knowledge base name of tenant (a document of the
// same name is replaced); every node of a cluster gets them.
func (s *Service) KBAdd(p *moltbot.Principal, tenant, name string, docs []KBDoc) error {
	space, err := s.kbSpace(p, tenant)
	if err != nil {
		return err
	}
	if len(docs) == 0 {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "documents", Message: "no documents to add"}
	}
	return s.cfg.KB.Store.Put(space, name, docs)
}

// KBDelete removes document doc of knowledge base name ("": every
// document, the base itself) and reports how many went.
func (s *Service) KBDelete(p *moltbot.Principal, tenant, name, doc string) (int, error) {
	space, err := s.kbSpace(p, tenant)
	if err != nil {
		return 0, err
	}
	return s.cfg.KB.Store.Delete(space, name, doc)
}

// KBSearch searches knowledge base name as the stage would (k chunks, 0: 4).
func (s *Service) KBSearch(p *moltbot.Principal, tenant, name, query string, k int) (*KBSearchResult, error) {
	space, err := s.kbSpace(p, tenant)
	if err != nil {
		return nil, err
	}
	if query == "" {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "query", Message: "query is empty"}
	}
	if k < 0 || k > moltbot.MaxCitations {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "k", Message: "k must be 0 to " + strconv.Itoa(moltbot.MaxCitations)}
	}
	if len(s.cfg.KB.Store.List(space, name)) == 0 {
		return nil, moltbot.Errorf(moltbot.ENotFound, "knowledge base %q not found", name)
	}
	found, a, err := s.cfg.KB.Store.Search(space, []string{name}, kb.Query{Text: query, K: k})
	if err != nil {
		return nil, err
	}
	th := 0.0
	if s.cfg.KB.Threshold != nil {
		th = s.cfg.KB.Threshold()
	}
	if th <= 0 {
		th = kb.DefaultThreshold
	}
	out := &KBSearchResult{Coverage: a.Coverage, Threshold: th, Hit: len(found) > 0 && a.Coverage >= th, Results: []moltbot.Citation{}}
	for _, f := range found {
		out.Results = append(out.Results, kb.CitationOf(f))
	}
	return out, nil
}
