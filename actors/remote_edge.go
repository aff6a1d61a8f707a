//go:build edge

package actors

import "errors"

// errNoRemote: the edge build has no cluster RPC (protoactor remote, gRPC).
var errNoRemote = errors.New("actors: this build (edge) has no cluster engine: use the default build (make build)")

// startRemote refuses: the edge build serves no cluster RPC
// (remote_rpc.go is the default build's).
func (l *Link) startRemote(addr, advertise string) error { return errNoRemote }
