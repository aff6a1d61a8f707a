package skills

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/storage"
)

func newFiles(t testing.TB) (*TenantFiles, storage.KV) {
	t.Helper()
	kv := storage.NewMemory().Namespace(storage.SkillFiles)
	f := NewTenantFiles()
	if err := f.Attach(changedKV{kv, f}); err != nil {
		t.Fatal(err)
	}
	return f, kv
}

// changedKV calls Changed after each write, as storage/replica does.
type changedKV struct {
	storage.KV
	f *TenantFiles
}

func (c changedKV) Put(k string, v []byte) error {
	if err := c.KV.Put(k, v); err != nil {
		return err
	}
	c.f.Changed(k, v)
	return nil
}

func (c changedKV) Delete(k string) error {
	if err := c.KV.Delete(k); err != nil {
		return err
	}
	c.f.Changed(k, nil)
	return nil
}

func codeOf(err error) string {
	var me *moltbot.Error
	if errors.As(err, &me) {
		return me.Code
	}
	return ""
}

func TestPushedPaths(t *testing.T) {
	for p, ok := range map[string]bool{
		"greet.js": true, "flows/refund.yaml": true, "flows/a.yml": true, "a-b_c.1.js": true,
		"": false, ".js": false, ".hidden.js": false, "greet.ts": false, "flows/x.js": false, "refund.yaml": false,
		"../x.js": false, "a/b.js": false, "flows/../x.yaml": false, "flows/sub/x.yaml": false, "intents.yaml": true, "flows/intents.yaml": true, "intents.yml": false,
		strings.Repeat("a", 65) + ".js": false, "é.js": false, "flows/.yaml": false,
	} {
		if err := CheckPushedPath(p); (err == nil) != ok {
			t.Errorf("%q: %v", p, err)
		}
	}
}

// Caps: a file's bytes, the files of a tenant, their bytes together;
// each refused with nothing written, naming what.
func TestPushCaps(t *testing.T) {
	f, _ := newFiles(t)
	big := strings.Repeat("x", MaxPushedFile+1)
	if _, _, err := f.Apply("acme", Change{Put: []PushedFile{{"a.js", big}}}, nil); codeOf(err) != moltbot.ETooLarge || !strings.Contains(err.Error(), "a.js has 262145 bytes") {
		t.Fatalf("a big file: %v", err)
	}
	var many []PushedFile
	for i := range MaxPushedFiles + 1 {
		many = append(many, PushedFile{Path: "s" + itoa(i) + ".js", Source: "x"})
	}
	if _, _, err := f.Apply("acme", Change{Put: many}, nil); codeOf(err) != moltbot.ETooLarge || !strings.Contains(err.Error(), "65 pushed files; at most 64") {
		t.Fatalf("many files: %v", err)
	}
	var heavy []PushedFile
	for i := range 5 {
		heavy = append(heavy, PushedFile{Path: "h" + itoa(i) + ".js", Source: strings.Repeat("y", 250<<10)})
	}
	if _, _, err := f.Apply("acme", Change{Put: heavy}, nil); codeOf(err) != moltbot.ETooLarge || !strings.Contains(err.Error(), "at most 1048576 together") {
		t.Fatalf("heavy: %v", err)
	}
	// Four fit; a fifth through another push does not.
	if _, _, err := f.Apply("acme", Change{Put: heavy[:4]}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Apply("acme", Change{Put: heavy[4:]}, nil); codeOf(err) != moltbot.ETooLarge {
		t.Fatalf("a fifth: %v", err)
	}
	if _, files, _ := f.Files("acme"); len(files) != 4 {
		t.Fatalf("%d files kept", len(files))
	}
	for _, bad := range []PushedFile{{"a.js", "a\x00b"}, {"a.js", "\xff"}, {"x/a.js", "x"}} {
		if _, _, err := f.Apply("acme", Change{Put: []PushedFile{bad}}, nil); codeOf(err) != moltbot.EInvalid {
			t.Errorf("%q: %v", bad.Path, err)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// A push is checked whole before it is written: a check that fails keeps
// the files as they were; put, replace and remove; an empty set deletes
// the record; versions are of the content.
func TestPushApply(t *testing.T) {
	f, kv := newFiles(t)
	if f.Any() || f.Version("acme") != "" {
		t.Fatal("not empty")
	}
	v1, files, err := f.Apply("acme", Change{Put: []PushedFile{{"b.js", "B"}, {"flows/f.yaml", "F"}}}, func(files []PushedFile) error {
		if len(files) != 2 || files[0].Path != "b.js" || files[1].Path != "flows/f.yaml" {
			t.Errorf("checked %+v", files)
		}
		return nil
	})
	if err != nil || len(files) != 2 || v1 == "" || f.Version("acme") != v1 || !f.Any() {
		t.Fatalf("%v %v %+v", err, v1, files)
	}
	refused := &moltbot.Error{Code: moltbot.EInvalid, Param: "a.js", Message: "a.js:1: no"}
	if _, _, err := f.Apply("acme", Change{Put: []PushedFile{{"a.js", "A"}}}, func([]PushedFile) error { return refused }); err != refused {
		t.Fatalf("refused: %v", err)
	}
	if f.Version("acme") != v1 {
		t.Fatal("a refused push changed the files")
	}
	v2, files, err := f.Apply("acme", Change{Put: []PushedFile{{"a.js", "A"}, {"b.js", "B2"}}}, nil)
	if err != nil || v2 == v1 || len(files) != 3 || files[1].Source != "B2" {
		t.Fatalf("%v %+v", err, files)
	}
	if _, _, err := f.Apply("acme", Change{Remove: []string{"nope.js"}}, nil); codeOf(err) != moltbot.ENotFound {
		t.Fatalf("remove what is not there: %v", err)
	}
	_, files, err = f.Apply("acme", Change{Put: []PushedFile{{"c.js", "C"}}, Replace: true}, nil)
	if err != nil || len(files) != 1 || files[0].Path != "c.js" {
		t.Fatalf("replace: %v %+v", err, files)
	}
	if _, files, err = f.Apply("acme", Change{Remove: []string{"c.js"}}, nil); err != nil || len(files) != 0 {
		t.Fatalf("remove the last: %v", err)
	}
	if f.Any() || f.Version("acme") != "" {
		t.Fatal("the index keeps a tenant with no file")
	}
	if _, found, _ := kv.Get("acme"); found {
		t.Fatal("the record stays")
	}
	// if_version: a push expecting another version is refused, nothing
	// written; the right one (none yet: "") goes in.
	none, stale := "", "0123456789abcdef"
	vx, _, err := f.Apply("acme", Change{Put: []PushedFile{{"a.js", "A"}}, IfVersion: &none}, nil)
	if err != nil || vx == "" {
		t.Fatalf("if none: %v", err)
	}
	if _, _, err := f.Apply("acme", Change{Put: []PushedFile{{"b.js", "B"}}, IfVersion: &stale}, nil); codeOf(err) != moltbot.EConflict || f.Version("acme") != vx {
		t.Fatalf("a stale if_version: %v", err)
	}
	if _, _, err := f.Apply("acme", Change{Put: []PushedFile{{"b.js", "B"}}, IfVersion: &none}, nil); codeOf(err) != moltbot.EConflict {
		t.Fatalf("if none, when there are: %v", err)
	}
	if _, files, err := f.Apply("acme", Change{Put: []PushedFile{{"b.js", "B"}}, IfVersion: &vx}, nil); err != nil || len(files) != 2 {
		t.Fatalf("the right if_version: %v", err)
	}
	f.Apply("acme", Change{Remove: []string{"a.js", "b.js"}}, nil)
	// The same content is the same version (on every member).
	a, _, _ := f.Apply("x", Change{Put: []PushedFile{{"a.js", "A"}}}, nil)
	b, _, _ := f.Apply("y", Change{Put: []PushedFile{{"a.js", "A"}}}, nil)
	if a != b || a == "" {
		t.Fatalf("versions %q %q", a, b)
	}
}

// Tenants are kept apart by space: a tenant made again (a new
// incarnation, another space) has none of the old one's files; the sweep
// of dead spaces deletes theirs; a node opened again reads the index
// back.
func TestPushedFilesTenancy(t *testing.T) {
	f, kv := newFiles(t)
	f.Apply("acme:1", Change{Put: []PushedFile{{"a.js", "A"}}}, nil)
	f.Apply("other", Change{Put: []PushedFile{{"o.js", "O"}}}, nil)
	if v, files, _ := f.Files("acme:2"); v != "" || files != nil {
		t.Fatal("a new incarnation sees the old one's files")
	}
	if _, files, _ := f.Files("other"); len(files) != 1 || files[0].Path != "o.js" {
		t.Fatalf("%+v", files)
	}
	g := NewTenantFiles()
	if err := g.Attach(changedKV{kv, g}); err != nil || strings.Join(g.Spaces(), ",") != "acme:1,other" || g.Version("acme:1") != f.Version("acme:1") {
		t.Fatalf("reopened: %v %v", err, g.Spaces())
	}
	n, err := f.DeleteSpaces(func(s string) bool { return s == "acme:1" })
	if err != nil || n != 1 || f.Version("acme:1") != "" || f.Version("other") == "" {
		t.Fatalf("sweep: %d %v %v", n, err, f.Spaces())
	}
}

// A record from disk or a member is read with every path and cap
// checked.
func FuzzDecodeFiles(f *testing.F) {
	f.Add(encodeFiles([]PushedFile{{"a.js", "x"}, {"flows/f.yaml", "y"}}))
	f.Add(encodeFiles([]PushedFile{{"b.js", "x"}, {"a.js", "y"}}))
	f.Add([]byte{1, 3, 'a', '.', 'j'})
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := decodeFiles(b)
		if err != nil {
			return
		}
		total := 0
		for i, x := range files {
			if CheckPushedPath(x.Path) != nil || (i > 0 && files[i-1].Path >= x.Path) {
				t.Fatalf("decoded %q", x.Path)
			}
			total += len(x.Source)
		}
		if total > MaxPushedBytes || len(files) > MaxPushedFiles {
			t.Fatalf("%d files, %d bytes", len(files), total)
		}
		if again, err := decodeFiles(encodeFiles(files)); err != nil || len(again) != len(files) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
