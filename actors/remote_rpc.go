//go:build !edge

package actors

// The cluster RPC server: protoactor remote over gRPC, behind the RPC
// guard (guard_rpc.go). The edge build has neither (remote_edge.go).

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// startRemote serves protoactor remote on addr (host:port) and spawns the
// agent: mutual TLS when the link has credentials, every message checked
// by the guard (guard.go).
func (l *Link) startRemote(addr, advertise string) (err error) {
	l.work.gauges(l.met)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("actors: remote address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("actors: remote address %q: bad port", addr)
	}
	// Remote.Start panics when it cannot listen: check first, and recover.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("actors: cannot listen for cluster RPC on %s: %w", addr, err)
	}
	ln.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("actors: start cluster RPC on %s: %v", addr, r)
		}
	}()
	l.guard = &rpcGuard{l: l, tls: l.creds != nil}
	server := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(l.guard.unary),
		grpc.ChainStreamInterceptor(l.guard.stream),
		grpc.ConnectionTimeout(5 * time.Second),
		grpc.MaxConcurrentStreams(16),
		grpc.MaxRecvMsgSize(maxRPCMessage),
	}
	dial := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRPCMessage))}
	if l.creds != nil {
		server = append(server, grpc.Creds(l.creds))
		dial = append(dial, grpc.WithTransportCredentials(l.creds))
	} else {
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	opts := []remote.ConfigOption{remote.WithServerOptions(server...), remote.WithDialOptions(dial...)}
	if advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(net.JoinHostPort(advertise, port)))
	}
	// protoactor joins host and port with a bare colon: an IPv6 host needs
	// its brackets.
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	r := remote.NewRemote(l.system, remote.Configure(host, p, opts...))
	r.Start()
	l.remote = r
	if _, err := l.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &agent{l: l} }), agentName); err != nil {
		return fmt.Errorf("actors: spawn agent: %w", err)
	}
	return nil
}
