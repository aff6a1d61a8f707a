package inference

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// A provider type ("ollama", "openai", ...) is registered by the package
// that implements it, in its init, the way database/sql drivers are: a
// new type is its package and one import where the node's providers are
// assembled (configs/providers.go). The config names known types from
// here, and the node builds its providers from here.

// Spec is one configured provider, as its type's factory gets it.
type Spec struct {
	Name   string
	URL    string   // the server's base URL ("" for a type that needs none)
	Models []string // models the config lists for it
	// Creds supplies the bearer key per call (a key pool or OAuth); types
	// that take no key ignore it.
	Creds *Credentials
	HTTP  *http.Client
	// Options are the type's own settings, of the type its package
	// documents (type sim: sim.Options); nil: the type's defaults.
	Options any
}

// Type is a kind of model server.
type Type struct {
	Name string
	// NeedsURL: a provider of this type needs a URL (a server; the
	// in-process simulator needs none).
	NeedsURL bool
	// DefaultURL, when set, is the URL of a provider of the type whose
	// config gives none (Ollama's: OLLAMA_HOST as Ollama's own tools read
	// it, else http://127.0.0.1:11434).
	DefaultURL func() string
	// New makes a provider of the type.
	New func(Spec) (Provider, error)
}

var registry struct {
	mu    sync.RWMutex
	types map[string]Type
}

// Register makes a provider type known. It panics on a type without a
// name or a factory, or registered twice: a programming error.
func Register(t Type) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if t.Name == "" || t.New == nil {
		panic("inference: Register needs a name and a factory")
	}
	if _, dup := registry.types[t.Name]; dup {
		panic("inference: provider type " + t.Name + " registered twice")
	}
	if registry.types == nil {
		registry.types = map[string]Type{}
	}
	registry.types[t.Name] = t
}

// LookupType returns the registered type name.
func LookupType(name string) (Type, bool) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	t, ok := registry.types[name]
	return t, ok
}

// Types lists the registered type names, sorted.
func Types() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	out := make([]string, 0, len(registry.types))
	for n := range registry.types {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// NewProvider makes the provider s of the registered type typ.
func NewProvider(typ string, s Spec) (Provider, error) {
	t, ok := LookupType(typ)
	if !ok {
		return nil, fmt.Errorf("provider %s: unknown type %q (known: %v)", s.Name, typ, Types())
	}
	p, err := t.New(s)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", s.Name, err)
	}
	return p, nil
}
