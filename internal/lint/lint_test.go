// Package lint holds tests that keep the architecture true: the import graph
// of ARCHITECTURE.md (cmd -> gateway -> actors -> {inference, storage,
// cluster} -> moltbot) is checked on every `make test`.
package lint

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const mod = "github.com/moltbot/moltbot"

// rule says what a package (and its subpackages) must not import. Prefixes
// are module-relative ("actors") or full paths of outside modules.
type rule struct {
	pkg    string
	forbid []string
}

var rules = []rule{
	{"inference", []string{"actors", "storage", "cluster", "gateway", "configs", "cmd", "bench", "github.com/asynkron/protoactor-go"}},
	{"storage", []string{"actors", "inference", "cluster", "gateway", "configs", "cmd", "bench", "github.com/asynkron/protoactor-go"}},
	{"cluster", []string{"actors", "inference", "storage", "gateway", "configs", "cmd", "bench", "github.com/asynkron/protoactor-go"}},
	{"configs", []string{"actors", "inference", "storage", "cluster", "gateway", "cmd", "bench", "github.com/asynkron/protoactor-go"}},
	// auth persists through its own KV interface: it does not know storage.
	{"auth", []string{"actors", "inference", "storage", "cluster", "gateway", "configs", "cmd", "bench", "github.com/asynkron/protoactor-go"}},
	// audit persists through its own KV interface; anything may record into it.
	{"audit", []string{"actors", "inference", "storage", "cluster", "gateway", "configs", "auth", "cmd", "bench", "github.com/asynkron/protoactor-go"}},
	// actors sees providers only through the inference.Provider interface.
	{"actors", []string{"gateway", "configs", "cmd", "bench", "inference/ollama", "inference/openai", "inference/anthropic", "inference/sim"}},
	{"gateway", []string{"cmd", "bench", "configs", "storage", "inference/ollama", "inference/openai", "inference/anthropic", "inference/sim", "github.com/asynkron/protoactor-go"}},
	// bench measures over HTTP only.
	{"bench", []string{"actors", "gateway", "storage", "cluster", "inference", "configs", "cmd", "github.com/asynkron/protoactor-go"}},
	{"internal", []string{"actors", "gateway", "storage", "cluster", "inference", "configs", "cmd", "bench"}},
	{"cmd", []string{"github.com/asynkron/protoactor-go"}},
}

func root(t *testing.T) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

func imports(t *testing.T, file string) []string {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []string
	for _, s := range f.Imports {
		p, _ := strconv.Unquote(s.Path.Value)
		out = append(out, p)
	}
	return out
}

func under(path, prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

func TestImportRules(t *testing.T) {
	top := root(t)
	checked := 0
	filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != "." && (strings.HasPrefix(n, ".") || n == "testdata") && path != top {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(top, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		for _, imp := range imports(t, path) {
			checked++
			if rel == "." {
				// The root package is vocabulary: standard library only.
				if strings.Contains(strings.Split(imp, "/")[0], ".") {
					t.Errorf("%s imports %s: package moltbot may use the standard library only", path, imp)
				}
				continue
			}
			for _, r := range rules {
				if !under(rel, r.pkg) {
					continue
				}
				for _, f := range r.forbid {
					full := f
					if !strings.Contains(strings.Split(f, "/")[0], ".") {
						full = mod + "/" + f
					}
					if under(imp, full) {
						t.Errorf("%s imports %s: %s must not depend on %s (see ARCHITECTURE.md)", path, imp, r.pkg, f)
					}
				}
			}
		}
		return nil
	})
	if checked < 50 {
		t.Fatalf("only %d imports checked: the walk is broken", checked)
	}
}
