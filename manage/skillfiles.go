package manage

import (
	"context"

	"github.com/moltbot/moltbot"
)

// Tenants' pushed skills: JavaScript skills (NAME.js) and YAML flows
// (flows/NAME.yaml) a tenant's admin pushes for its own tenant, the
// operator for any. They are kept by the tenant's space (its id and
// incarnation), so a tenant deleted and made again starts with none, and
// reach every node of a cluster. A push is checked whole by the node's
// loaders before anything is written: a file that would not load is
// refused (EInvalid naming the file, its line and key), and the push is
// one write (nothing half-applied).

// SkillFile is a pushed file: its path, its text (when asked for) and
// what it is.
type SkillFile struct {
	Path   string `json:"path"`
	Source string `json:"source,omitempty"`
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256,omitempty"`
}

// SkillFileList is a tenant's pushed files: their version (the same on
// every node that holds the same files; "" when there are none), the
// files without their text, and their bytes together.
type SkillFileList struct {
	Version string      `json:"version"`
	Files   []SkillFile `json:"files"`
	Bytes   int         `json:"bytes"`
	// Skills and Flows name what the files hold (on a push: what
	// loaded).
	Skills []string `json:"skills,omitempty"`
	Flows  []string `json:"flows,omitempty"`
}

// SkillFiles keeps tenants' pushed files (cmd's, over skills.TenantFiles
// and the node's loaders).
type SkillFiles interface {
	// List is space's files.
	List(space string) (*SkillFileList, error)
	// Get is one file of space's, with its text; found false when there
	// is no such file.
	Get(space, path string) (f SkillFile, found bool, err error)
	// Push puts files (replace: in place of every file), removes paths,
	// checks the result whole and writes it as one change.
	Push(ctx context.Context, space string, c SkillFilesChange) (*SkillFileList, error)
}

// SkillFilesChange is a push: files to put, paths to remove, whether the
// put files replace every file, and the version the files must be at
// (nil: any; "": none yet), else EConflict.
type SkillFilesChange struct {
	Put       []SkillFile
	Remove    []string
	Replace   bool
	IfVersion *string
}

func (s *Service) skillFilesSpace(p *moltbot.Principal, tenant string) (string, error) {
	if err := requireAdmin(p); err != nil {
		return "", err
	}
	if s.cfg.SkillFiles == nil {
		return "", moltbot.Errorf(moltbot.ENotFound, "this node keeps no pushed skills (it has no workspace)")
	}
	return s.adminSpace(p, tenant, "skills")
}

// SkillFilesList lists tenant's pushed skill files ("": p's own).
func (s *Service) SkillFilesList(p *moltbot.Principal, tenant string) (*SkillFileList, error) {
	space, err := s.skillFilesSpace(p, tenant)
	if err != nil {
		return nil, err
	}
	return s.cfg.SkillFiles.List(space)
}

// SkillFileGet is one pushed file of tenant's, with its text.
func (s *Service) SkillFileGet(p *moltbot.Principal, tenant, path string) (*SkillFile, error) {
	space, err := s.skillFilesSpace(p, tenant)
	if err != nil {
		return nil, err
	}
	f, found, err := s.cfg.SkillFiles.Get(space, path)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, &moltbot.Error{Code: moltbot.ENotFound, Param: "path", Message: "no pushed file " + quote(path)}
	}
	return &f, nil
}

// SkillFilesPush puts and removes tenant's pushed files in one change,
// after the node's loaders took the result.
func (s *Service) SkillFilesPush(ctx context.Context, p *moltbot.Principal, tenant string, c SkillFilesChange) (*SkillFileList, error) {
	space, err := s.skillFilesSpace(p, tenant)
	if err != nil {
		return nil, err
	}
	if len(c.Put) == 0 && len(c.Remove) == 0 && !c.Replace {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "files", Message: "nothing to push: no file to put or remove"}
	}
	return s.cfg.SkillFiles.Push(ctx, space, c)
}
