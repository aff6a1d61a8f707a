//go:build edge

package cluster

import (
	"errors"
	"testing"
)

// The edge build has no gossip engine: Start refuses, saying so.
func TestEdgeStartRefuses(t *testing.T) {
	c, err := Start(Config{Bind: "127.0.0.1:0"})
	if c != nil || !errors.Is(err, ErrNoEngine) {
		t.Fatalf("Start = %v, %v; want ErrNoEngine", c, err)
	}
}
