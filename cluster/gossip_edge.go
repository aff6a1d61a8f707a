//go:build edge

package cluster

import (
	"errors"
	"time"
)

// The edge build has no cluster engine: no memberlist, no gRPC (the
// default build's gossip.go, transport.go and tls_grpc.go). What stays is
// what a single node and the admin commands use: Config, the ring, node
// certificates and keys. cmd refuses cluster.bind before it gets here.

// ErrNoEngine is Start's error in the edge build.
var ErrNoEngine = errors.New("cluster: this build (edge) has no cluster engine: use the default build (make build)")

// gossip is empty: no Cluster is ever started in this build.
type gossip struct{}

// Start refuses: this build has no cluster engine.
func Start(Config) (*Cluster, error) { return nil, ErrNoEngine }

// SetKeys is never reached (no Cluster exists in this build).
func (c *Cluster) SetKeys([][]byte) error { return ErrNoEngine }

// KeyCount is 0: no gossip.
func (c *Cluster) KeyCount() int { return 0 }

// Leave is never reached (no Cluster exists in this build).
func (c *Cluster) Leave(time.Duration) error { return ErrNoEngine }

// Shutdown is never reached (no Cluster exists in this build).
func (c *Cluster) Shutdown() error { return nil }
