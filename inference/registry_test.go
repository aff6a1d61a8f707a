package inference

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

type nop struct{}

func (nop) Chat(context.Context, *Request, DeltaFunc) (Result, error) { return Result{}, nil }
func (nop) Models(context.Context) ([]string, error)                  { return nil, nil }

func TestRegistry(t *testing.T) {
	var got Spec
	Register(Type{Name: "test-registry", NeedsURL: true, New: func(s Spec) (Provider, error) {
		got = s
		if s.URL == "" {
			return nil, errors.New("no url")
		}
		return nop{}, nil
	}})
	if tp, ok := LookupType("test-registry"); !ok || !tp.NeedsURL || !slices.Contains(Types(), "test-registry") || !slices.IsSorted(Types()) {
		t.Fatalf("lookup %+v %v, types %v", tp, ok, Types())
	}
	if p, err := NewProvider("test-registry", Spec{Name: "a", URL: "http://x", Models: []string{"m"}}); err != nil || p == nil || got.Name != "a" || got.Models[0] != "m" {
		t.Fatalf("new: %v %v %+v", p, err, got)
	}
	if _, err := NewProvider("test-registry", Spec{Name: "b"}); err == nil || !strings.HasPrefix(err.Error(), "provider b: no url") {
		t.Errorf("factory error: %v", err)
	}
	if _, err := NewProvider("nope", Spec{Name: "c"}); err == nil || !strings.Contains(err.Error(), `unknown type "nope"`) || !strings.Contains(err.Error(), "test-registry") {
		t.Errorf("unknown type: %v", err)
	}
	for _, bad := range []Type{{Name: "test-registry", New: func(Spec) (Provider, error) { return nop{}, nil }}, {Name: "x"}, {New: func(Spec) (Provider, error) { return nop{}, nil }}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%+v) did not panic", bad)
				}
			}()
			Register(bad)
		}()
	}
}

// OpenAI's and Anthropic's model lists, read once.
func TestReadModelList(t *testing.T) {
	ids, err := ReadModelList("p", strings.NewReader(`{"object":"list","data":[{"id":"a","object":"model"},{"id":"b"}],"has_more":false}`))
	if err != nil || strings.Join(ids, ",") != "a,b" {
		t.Fatalf("%v %v", ids, err)
	}
	var e *Error
	if _, err := ReadModelList("p", strings.NewReader(`<html>`)); !errors.As(err, &e) || e.Kind != KindUnavailable || e.Provider != "p" {
		t.Fatalf("malformed: %v", err)
	}
}
