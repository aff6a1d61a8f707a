package actors

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// agentName is the well-known actor that receives every Envelope from other
// nodes.
const agentName = "moltbot"

// maxRPCMessage bounds one message batch between nodes (a snapshot, or
// the shared state in a full exchange).
const maxRPCMessage = 16 << 20

var (
	// errOwnerGone: the owner left or died before answering.
	errOwnerGone = errors.New("actors: the owner node went away during the request")
	// errWrongReplier: another node answered a request than the one asked.
	errWrongReplier = errors.New("actors: answered by another node")
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
	l.remote = remote.NewRemote(l.system, remote.Configure(host, p, opts...))
	l.remote.Start()
	if _, err := l.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &agent{l: l} }), agentName); err != nil {
		return fmt.Errorf("actors: spawn agent: %w", err)
	}
	return nil
}

func agentPID(n cluster.Node) *actor.PID { return actor.NewPID(n.RPC, agentName) }

func (l *Link) envelope() *pb.Envelope {
	return &pb.Envelope{Protocol: cluster.Protocol, FromNode: l.place().ID()}
}

// request sends env to node's agent and waits for one reply envelope,
// which must come from that node.
func (l *Link) request(node cluster.Node, env *pb.Envelope, timeout time.Duration) (*pb.Envelope, error) {
	// The future is known to the RPC guard with the node asked before the
	// request leaves: only that node may answer it.
	f := actor.NewFuture(l.system, timeout)
	l.futures.Store(f.PID().Id, node.ID)
	defer l.futures.Delete(f.PID().Id)
	l.system.Root.RequestWithCustomSender(agentPID(node), env, f.PID())
	res, err := f.Result()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node.ID, err)
	}
	reply, ok := res.(*pb.Envelope)
	if !ok {
		return nil, fmt.Errorf("node %s: unexpected reply %T", node.ID, res)
	}
	if reply.FromNode != node.ID {
		l.met.Inc(metrics.ClusterRefused, "identity")
		return nil, fmt.Errorf("node %s: the reply came from %q: %w", node.ID, reply.FromNode, errWrongReplier)
	}
	return reply, nil
}

// requestPatient is request, asked again while the node answers busy (with
// the route retry's pauses), until timeout. For node-to-node work that a
// client does not wait on directly (replication, acquiring a copy): a busy
// replica should still get the snapshot. The last answer is returned.
func (l *Link) requestPatient(node cluster.Node, env *pb.Envelope, timeout time.Duration) (*pb.Envelope, error) {
	deadline := time.Now().Add(timeout)
	for attempt := 0; ; attempt++ {
		// (never a negative timeout: a future given one waits forever)
		r, err := l.request(node, env, max(time.Until(deadline), time.Millisecond))
		if err != nil || !isBusy(r) {
			return r, err
		}
		pause := retryPause(attempt)
		if time.Until(deadline) <= pause {
			return r, nil
		}
		select {
		case <-time.After(pause):
		case <-l.life.base.Done():
			return r, nil
		}
	}
}
