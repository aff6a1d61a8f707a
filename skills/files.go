package skills

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// A tenant's pushed skills (moltbot skills push, PUT /v1/admin/skills/
// files/...): JavaScript skills (NAME.js) and YAML flows (flows/NAME.yaml)
// that belong to one tenant's space and reach every node of a cluster.
// They are kept as one record per space in a replicated namespace (in a
// node, storage/replica over storage.SkillFiles, so every member holds
// every tenant's files): a push of several files is one write, so a node
// never holds half of it (a flow without the skill it calls).

// Caps on a tenant's pushed files, checked on a push (and on a record a
// member sends: storage/replica refuses a value over MaxPushedRecord).
const (
	// MaxPushedFile bounds one JavaScript file (a flow is at most
	// flow.MaxFile, 32 KiB, which its parser checks).
	MaxPushedFile = 256 << 10
	// MaxPushedFiles bounds a tenant's files.
	MaxPushedFiles = 64
	// MaxPushedBytes bounds the bytes of a tenant's files together.
	MaxPushedBytes = 1 << 20
	// MaxPushedRecord bounds a stored record: the files and their
	// names' framing.
	MaxPushedRecord = MaxPushedBytes + 64<<10
)

// PushedFile is one pushed file: its path under the tenant's skills
// (NAME.js, flows/NAME.yaml) and its text.
type PushedFile struct {
	Path   string `json:"path"`
	Source string `json:"source"`
}

// FlowsDir is where a tenant's flows are, as in a workspace's skills/.
const FlowsDir = "flows/"

// IntentsFile is a tenant's intents file, as skills/intents.yaml is a
// workspace's.
const IntentsFile = "intents.yaml"

// CheckPushedPath says whether p may name a pushed file: NAME.js,
// flows/NAME.yaml (or .yml), NAME 1 to 64 of letters, digits, '_', '-'
// and '.', not starting with '.', or intents.yaml. The error says what
// may.
func CheckPushedPath(p string) error {
	if p == IntentsFile {
		return nil
	}
	name, ok := strings.CutPrefix(p, FlowsDir)
	var ext string
	switch {
	case ok && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")):
		ext = name[strings.LastIndexByte(name, '.'):]
	case !ok && strings.HasSuffix(p, ".js"):
		ext = ".js"
	default:
		return fmt.Errorf("%q: a pushed skill file is NAME.js (a JavaScript skill), flows/NAME.yaml (a flow) or intents.yaml", p)
	}
	base := strings.TrimSuffix(name, ext)
	if base == "" || len(base) > 64 || base[0] == '.' || strings.ContainsFunc(base, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
	}) {
		return fmt.Errorf("%q: a file's name is 1 to 64 of letters, digits, '_', '-' and '.', not starting with '.'", p)
	}
	return nil
}

// IsFlow reports whether a pushed path is a flow's.
func IsFlow(p string) bool { return strings.HasPrefix(p, FlowsDir) }

// TenantFiles is every tenant's pushed files, by space. It keeps only an
// index of versions in memory (the files stay in the KV until a node
// needs them: a node that holds 100 tenants' skills holds their text on
// disk, not in its heap). Safe for concurrent use.
type TenantFiles struct {
	kv ScanKV

	mu    sync.RWMutex
	index map[string]string // space -> version

	// pushMu guards pushing: one push (read, change, check, write) at a
	// time per space, so that a slow check of one tenant's files (up to
	// the worker's load bound) holds up no other tenant's push.
	pushMu  sync.Mutex
	pushing map[string]*sync.Mutex
}

// NewTenantFiles returns an empty store; Attach gives it its records.
// (Made before its KV so that the KV's change hook can be Changed.)
func NewTenantFiles() *TenantFiles { return &TenantFiles{index: map[string]string{}} }

// Attach reads kv's records into the index. kv must call Changed for each
// change after this (storage/replica's Config.Changed).
func (f *TenantFiles) Attach(kv ScanKV) error {
	f.kv = kv
	f.mu.Lock()
	defer f.mu.Unlock()
	return kv.Scan(func(key string, val []byte) bool {
		if _, err := decodeFiles(val); err == nil {
			f.index[key] = fileVersion(val)
		}
		return true
	})
}

// Changed notes that space's record changed (val nil: deleted), here or
// through a member. Short: storage/replica calls it under its lock.
func (f *TenantFiles) Changed(space string, val []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if val == nil {
		delete(f.index, space)
		return
	}
	if _, err := decodeFiles(val); err != nil {
		delete(f.index, space) // a record this build cannot read: none
		return
	}
	f.index[space] = fileVersion(val)
}

// Version is the version of space's files ("" when it has none): 16 hex
// digits of their record's SHA-256, the same on every member that holds
// the same files.
func (f *TenantFiles) Version(space string) string {
	if f == nil {
		return ""
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index[space]
}

// Any reports whether some tenant has pushed files: a node where none has
// loads nothing for them.
func (f *TenantFiles) Any() bool {
	if f == nil {
		return false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.index) > 0
}

// Spaces are the spaces that have files, sorted.
func (f *TenantFiles) Spaces() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]string, 0, len(f.index))
	for s := range f.index {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Files are space's files, by path, and their version ("" and none when
// it has none).
func (f *TenantFiles) Files(space string) (string, []PushedFile, error) {
	if f == nil || f.kv == nil || space == "" {
		return "", nil, nil
	}
	val, found, err := f.kv.Get(space)
	if err != nil || !found {
		return "", nil, err
	}
	files, err := decodeFiles(val)
	if err != nil {
		return "", nil, fmt.Errorf("skills: the pushed files of %s: %w", space, err)
	}
	return fileVersion(val), files, nil
}

// Change is a push: files to put (a file of the same path is replaced),
// paths to remove, and whether the put files replace every file.
type Change struct {
	Put     []PushedFile
	Remove  []string
	Replace bool
	// IfVersion, when set, is the version the push expects the files to
	// be at ("" : none yet): another one is EConflict, nothing written.
	IfVersion *string
}

// Apply changes space's files: it composes the new set, checks every
// path, the caps and, with check, the set as a whole (the node's loaders:
// nothing is written when a file would not load), then writes it as one
// record (no file left: the record is deleted). It returns the new
// version and files. Errors are *moltbot.Error: EInvalid naming the file
// (Param), ETooLarge for a cap, ENotFound for a path to remove that is
// not there, EConflict when the files are not at c.IfVersion.
func (f *TenantFiles) Apply(space string, c Change, check func(files []PushedFile) error) (string, []PushedFile, error) {
	if space == "" {
		return "", nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "tenant", Message: "no tenant"}
	}
	unlock := f.lockSpace(space)
	defer unlock()
	curVer, cur, err := f.Files(space)
	if err != nil {
		return "", nil, err
	}
	if c.IfVersion != nil && *c.IfVersion != curVer {
		return "", nil, &moltbot.Error{Code: moltbot.EConflict, Param: "if_version",
			Message: fmt.Sprintf("the tenant's files are at version %q, not %q: pull them, or push without if_version", curVer, *c.IfVersion)}
	}
	by := map[string]string{}
	if !c.Replace {
		for _, x := range cur {
			by[x.Path] = x.Source
		}
	}
	for _, p := range c.Remove {
		if _, ok := by[p]; !ok {
			return "", nil, &moltbot.Error{Code: moltbot.ENotFound, Param: p, Message: fmt.Sprintf("no pushed file %q", p)}
		}
		delete(by, p)
	}
	seen := map[string]bool{}
	for _, x := range c.Put {
		if err := CheckPushedPath(x.Path); err != nil {
			return "", nil, &moltbot.Error{Code: moltbot.EInvalid, Param: x.Path, Message: err.Error()}
		}
		if seen[x.Path] {
			return "", nil, &moltbot.Error{Code: moltbot.EInvalid, Param: x.Path, Message: fmt.Sprintf("%s is given twice", x.Path)}
		}
		seen[x.Path] = true
		if !utf8.ValidString(x.Source) || strings.IndexByte(x.Source, 0) >= 0 {
			return "", nil, &moltbot.Error{Code: moltbot.EInvalid, Param: x.Path, Message: x.Path + " is not UTF-8 text"}
		}
		if len(x.Source) > MaxPushedFile {
			return "", nil, &moltbot.Error{Code: moltbot.ETooLarge, Param: x.Path,
				Message: fmt.Sprintf("%s has %d bytes; a pushed file is at most %d", x.Path, len(x.Source), MaxPushedFile)}
		}
		by[x.Path] = x.Source
	}
	files := make([]PushedFile, 0, len(by))
	total := 0
	for p, src := range by {
		files = append(files, PushedFile{Path: p, Source: src})
		total += len(src)
	}
	slices.SortFunc(files, func(a, b PushedFile) int { return strings.Compare(a.Path, b.Path) })
	if len(files) > MaxPushedFiles {
		return "", nil, &moltbot.Error{Code: moltbot.ETooLarge, Param: "files",
			Message: fmt.Sprintf("the tenant would have %d pushed files; at most %d", len(files), MaxPushedFiles)}
	}
	if total > MaxPushedBytes {
		return "", nil, &moltbot.Error{Code: moltbot.ETooLarge, Param: "files",
			Message: fmt.Sprintf("the tenant's pushed files would be %d bytes; at most %d together", total, MaxPushedBytes)}
	}
	if check != nil && len(files) > 0 {
		if err := check(files); err != nil {
			return "", nil, err
		}
	}
	if len(files) == 0 {
		if err := f.kv.Delete(space); err != nil {
			return "", nil, err
		}
		return "", nil, nil
	}
	val := encodeFiles(files)
	if err := f.kv.Put(space, val); err != nil {
		return "", nil, err
	}
	return fileVersion(val), files, nil
}

// lockSpace takes space's push lock and returns its release.
func (f *TenantFiles) lockSpace(space string) func() {
	f.pushMu.Lock()
	if f.pushing == nil {
		f.pushing = map[string]*sync.Mutex{}
	}
	m := f.pushing[space]
	if m == nil {
		m = &sync.Mutex{}
		f.pushing[space] = m
	}
	f.pushMu.Unlock()
	m.Lock()
	return m.Unlock
}

// DeleteSpaces deletes the files of every space dead reports true
// (auth's sweep of deleted tenants) and returns how many spaces lost
// theirs.
func (f *TenantFiles) DeleteSpaces(dead func(space string) bool) (int, error) {
	if f == nil || f.kv == nil {
		return 0, nil
	}
	n := 0
	for _, s := range f.Spaces() {
		if !dead(s) {
			continue
		}
		unlock := f.lockSpace(s)
		err := f.kv.Delete(s)
		unlock()
		if err != nil {
			return n, fmt.Errorf("skills: sweep pushed files: %w", err)
		}
		n++
	}
	return n, nil
}

// The record: uvarint count, then per file uvarint path length, path,
// uvarint source length, source; files sorted by path.
func encodeFiles(files []PushedFile) []byte {
	var out []byte
	out = binary.AppendUvarint(out, uint64(len(files)))
	for _, x := range files {
		out = binary.AppendUvarint(out, uint64(len(x.Path)))
		out = append(out, x.Path...)
		out = binary.AppendUvarint(out, uint64(len(x.Source)))
		out = append(out, x.Source...)
	}
	return out
}

var errFilesCut = errors.New("a pushed files record cut short")

// decodeFiles reads a record (from this node's disk or a member's
// change): every path checked, the caps held.
func decodeFiles(b []byte) ([]PushedFile, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > MaxPushedFiles {
		return nil, fmt.Errorf("a pushed files record of %d files", n)
	}
	b = b[k:]
	files := make([]PushedFile, 0, n)
	total := 0
	for range n {
		var parts [2]string
		for i := range parts {
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return nil, errFilesCut
			}
			parts[i] = string(b[k : k+int(l)])
			b = b[k+int(l):]
		}
		if err := CheckPushedPath(parts[0]); err != nil {
			return nil, err
		}
		if len(files) > 0 && files[len(files)-1].Path >= parts[0] {
			return nil, fmt.Errorf("pushed files out of order at %q", parts[0])
		}
		if len(parts[1]) > MaxPushedFile || !utf8.ValidString(parts[1]) {
			return nil, fmt.Errorf("pushed file %q: %d bytes or not UTF-8", parts[0], len(parts[1]))
		}
		total += len(parts[1])
		files = append(files, PushedFile{Path: parts[0], Source: parts[1]})
	}
	if len(b) != 0 || total > MaxPushedBytes {
		return nil, fmt.Errorf("a pushed files record with %d bytes left over, %d bytes of files", len(b), total)
	}
	return files, nil
}

func fileVersion(val []byte) string {
	sum := sha256.Sum256(val)
	return hex.EncodeToString(sum[:8])
}
