// Package cluster is moltbot's membership and placement, without actors:
// gossip membership over hashicorp/memberlist (node metadata: RPC and HTTP
// addresses, version, protocol, load) and a rendezvous-hash ring that gives
// every conversation an owner and ranked replicas among the live members.
//
// Memberlist callbacks never block and never call out: they update state
// under a mutex and signal a coalescing channel (Changes) that the owner of
// the Cluster drains on its own goroutine.
package cluster

import (
	"sort"
	"time"
)

// Node is a member as placement sees it.
type Node struct {
	ID     string `json:"id"`             // memberlist name, unique and stable across restarts
	Name   string `json:"name,omitempty"` // the node's name in its certificate (TLS clusters)
	RPC    string `json:"rpc"`            // protoactor remote address host:port
	HTTP   string `json:"http"`           // HTTP address host:port
	Addr   string `json:"gossip"`         // gossip address host:port
	Ver    string `json:"version"`        // moltbot version
	Proto  int    `json:"protocol"`       // cluster protocol version
	Load   int    `json:"conversations"`  // conversations active in memory
	State  string `json:"state"`          // alive, leaving (off the ring, handing off), dead, left
	Local  bool   `json:"self"`           // this node
	Joined int64  `json:"joined"`         // unix ms when first seen alive
	// Verified: its RPC identity was proved (a TLS cluster: its certificate
	// names it). Refuted: the proof failed for certain (its certificate is
	// not the CA's or names another node): it is kept off the ring.
	Verified bool `json:"verified"`
	Refuted  bool `json:"refuted,omitempty"`

	leaving   bool
	since     time.Time // when State last changed
	verifying bool
	failures  int
	nextTry   time.Time
	backoff   time.Duration
}

// Ring places keys on a fixed set of nodes by rendezvous (highest random
// weight) hashing: each key ranks every node by hash(node, key); the first is
// the owner, the next are replicas. Adding or removing a node moves only the
// keys that rank it first. A Ring is immutable.
type Ring struct {
	nodes []Node
	seeds []uint64
}

// NewRing builds a ring over nodes (copied, sorted by ID).
func NewRing(nodes []Node) *Ring {
	ns := append([]Node(nil), nodes...)
	sort.Slice(ns, func(i, j int) bool { return ns[i].ID < ns[j].ID })
	r := &Ring{nodes: ns, seeds: make([]uint64, len(ns))}
	for i, n := range ns {
		r.seeds[i] = hashString(0xcbf29ce484222325, n.ID)
	}
	return r
}

// Nodes returns the ring's nodes, sorted by ID.
func (r *Ring) Nodes() []Node { return append([]Node(nil), r.nodes...) }

// Len is the number of nodes.
func (r *Ring) Len() int { return len(r.nodes) }

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

// mix is a 64-bit finalizer (splitmix64): FNV alone spreads similar keys badly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (r *Ring) score(i int, key string) uint64 {
	return mix(hashString(r.seeds[i], key))
}

// Owner returns the node that owns key, and false on an empty ring.
func (r *Ring) Owner(key string) (Node, bool) {
	if len(r.nodes) == 0 {
		return Node{}, false
	}
	best, bestScore := 0, r.score(0, key)
	for i := 1; i < len(r.nodes); i++ {
		if s := r.score(i, key); s > bestScore {
			best, bestScore = i, s
		}
	}
	return r.nodes[best], true
}

// Ranked returns up to n nodes for key, owner first.
func (r *Ring) Ranked(key string, n int) []Node {
	type scored struct {
		i int
		s uint64
	}
	all := make([]scored, len(r.nodes))
	for i := range r.nodes {
		all[i] = scored{i, r.score(i, key)}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].s > all[b].s })
	if n > len(all) || n <= 0 {
		n = len(all)
	}
	out := make([]Node, n)
	for k := 0; k < n; k++ {
		out[k] = r.nodes[all[k].i]
	}
	return out
}

// Has reports whether a node with id is on the ring.
func (r *Ring) Has(id string) bool {
	for _, n := range r.nodes {
		if n.ID == id {
			return true
		}
	}
	return false
}

// Get returns the node with id.
func (r *Ring) Get(id string) (Node, bool) {
	for _, n := range r.nodes {
		if n.ID == id {
			return n, true
		}
	}
	return Node{}, false
}
