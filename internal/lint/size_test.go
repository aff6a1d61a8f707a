package lint

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The actors packages stay readable one piece at a time (issue 11): no Go
// file of actors or its subpackages, tests included, over maxFileLines
// lines, and no type with more than maxMethods methods (on T and *T
// together). Generated files (protoc's) are exempt.
const (
	maxFileLines = 500
	maxMethods   = 15
)

func TestActorsSize(t *testing.T) {
	top := filepath.Join(root(t), "actors")
	methods := map[string]int{} // "dir.Type" -> methods
	files := 0
	err := filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		if ast.IsGenerated(f) {
			return nil
		}
		files++
		rel, _ := filepath.Rel(root(t), path)
		if n := bytes.Count(src, []byte("\n")); n > maxFileLines {
			t.Errorf("%s: %d lines; split it along its seams (at most %d)", rel, n, maxFileLines)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) == 0 {
				continue
			}
			typ := fn.Recv.List[0].Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			if idx, ok := typ.(*ast.IndexExpr); ok { // generic receiver T[P]
				typ = idx.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				methods[filepath.Dir(rel)+"."+id.Name]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Fatalf("only %d files under actors/ read: the walk is broken", files)
	}
	var types []string
	for typ := range methods {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, typ := range types {
		if n := methods[typ]; n > maxMethods {
			t.Errorf("%s has %d methods; give part of it a type of its own (at most %d)", typ, n, maxMethods)
		}
	}
	if testing.Verbose() {
		sort.Slice(types, func(i, j int) bool { return methods[types[i]] > methods[types[j]] })
		for _, typ := range types[:min(len(types), 8)] {
			fmt.Printf("%3d methods  %s\n", methods[typ], typ)
		}
	}
}
