//go:build !edge

package actors

// The RPC guard's gRPC interceptors and its check of every message batch
// (guard.go says what is checked). Not in the edge build: no cluster RPC.

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/remote"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func (g *rpcGuard) recovered(p any, method string) error {
	g.l.met.Inc(metrics.ClusterRefused, "panic")
	g.l.log.Error("cluster RPC: recovered a panic", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

// unary refuses every unary call: protoactor leaves them unimplemented
// (they panic).
func (g *rpcGuard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	g.l.met.Inc(metrics.ClusterRefused, "method")
	return nil, status.Errorf(codes.Unimplemented, "%s is not served", info.FullMethod)
}

func (g *rpcGuard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = g.recovered(p, info.FullMethod)
		}
	}()
	if info.FullMethod != receiveMethod {
		g.l.met.Inc(metrics.ClusterRefused, "method")
		return status.Errorf(codes.Unimplemented, "%s is not served", info.FullMethod)
	}
	gs := &guardedStream{ServerStream: ss, g: g}
	if p, ok := peer.FromContext(ss.Context()); ok {
		gs.addr = p.Addr.String()
		if p.AuthInfo != nil {
			gs.name = cluster.PeerName(p.AuthInfo)
		}
	}
	if g.tls && gs.name == "" {
		g.refused(refuse("identity", "a connection without a node certificate"), gs.addr)
		return status.Error(codes.Unauthenticated, "a node certificate is required")
	}
	return handler(srv, gs)
}

// guardedStream checks every message protoactor's endpoint reader receives.
type guardedStream struct {
	grpc.ServerStream
	g    *rpcGuard
	addr string // the peer's address, for logs
	name string // the peer certificate's node name (TLS)
	from string // the member this stream carries messages from, once known

	connected bool // the stream's connect request was seen
}

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	rm, ok := m.(*remote.RemoteMessage)
	if !ok {
		return nil
	}
	var r *refusal
	switch t := rm.MessageType.(type) {
	case *remote.RemoteMessage_MessageBatch:
		r = s.checkBatch(t.MessageBatch)
	case *remote.RemoteMessage_ConnectRequest:
		// A writer opens its stream with one server connection request;
		// anything else is protoactor's unimplemented paths (each logs).
		if s.connected || t.ConnectRequest.GetServerConnection() == nil {
			r = refuse("malformed", "a second or unsupported connect request")
		}
		s.connected = true
	default:
		r = refuse("malformed", "a %T on the receive stream", rm.MessageType)
	}
	if r != nil {
		s.g.refused(r, s.addr)
		return status.Error(codes.PermissionDenied, r.Error())
	}
	return nil
}

func (s *guardedStream) checkBatch(b *remote.MessageBatch) *refusal {
	l := s.g.l
	if !l.clustered() {
		// Remote serves before Attach gives it the membership (a node
		// starting: peers prove it while it joins). No one is a member yet.
		return refuse("not_ready", "this node has not joined the cluster yet")
	}
	self := l.system.Address()
	var m cluster.Node // the sending member, looked up once per batch
	drop := 0          // envelopes for futures no longer waiting (late replies)
	for i, e := range b.Envelopes {
		if e == nil {
			return refuse("malformed", "envelope %d is empty", i)
		}
		if e.Target < 0 || int(e.Target) >= len(b.Targets) || b.Targets[e.Target] == nil {
			return refuse("malformed", "envelope %d: target index %d of %d", i, e.Target, len(b.Targets))
		}
		if e.Sender < 0 || int(e.Sender) > len(b.Senders) || e.Sender > 0 && b.Senders[e.Sender-1] == nil {
			return refuse("malformed", "envelope %d: sender index %d of %d", i, e.Sender, len(b.Senders))
		}
		if e.TypeId < 0 || int(e.TypeId) >= len(b.TypeNames) {
			return refuse("malformed", "envelope %d: type index %d of %d", i, e.TypeId, len(b.TypeNames))
		}
		if e.SerializerId != 0 {
			return refuse("type", "envelope %d: serializer %d (only protobuf is spoken)", i, e.SerializerId)
		}
		target := b.Targets[e.Target]
		if target.Address != self {
			return refuse("target", "envelope %d is addressed to %q, not this node (%s)", i, target.Address, self)
		}
		switch typ := b.TypeNames[e.TypeId]; typ {
		case envelopeType:
			if !(target.Id == agentName || ephemeral(target.Id, futurePrefix) || ephemeral(target.Id, sinkPrefix)) {
				return refuse("target", "envelope %d is addressed to actor %q", i, target.Id)
			}
			h, err := peekEnvelope(e.MessageData)
			if err != nil {
				return refuse("malformed", "envelope %d: %v", i, err)
			}
			if m.ID == "" || string(h.from) != m.ID {
				if r := s.checkSender(string(h.from)); r != nil {
					return r
				}
				m, _ = l.place().Member(s.from)
			}
			if len(h.replyAddress) > 0 && string(h.replyAddress) != m.RPC {
				return refuse("reply_address", "member %s asked for replies at %q, not its own RPC address %q", m.ID, h.replyAddress, m.RPC)
			}
			if e.Sender > 0 && b.Senders[e.Sender-1].Address != m.RPC {
				return refuse("reply_address", "member %s sent as %q, not its own RPC address %q", m.ID, b.Senders[e.Sender-1].Address, m.RPC)
			}
			if ephemeral(target.Id, futurePrefix) {
				asked, waiting := l.futures.Load(target.Id)
				switch {
				case !waiting:
					b.Envelopes[i], drop = nil, drop+1
				case asked.(string) != m.ID:
					return refuse("identity", "member %s answered a request this node made to %s", m.ID, asked)
				}
			}
		case deadLetterType:
			// protoactor's answer to a request whose target does not exist:
			// to one of our futures, from the member it asked, naming no
			// sender (else protoactor would answer that sender: a dial out).
			if !ephemeral(target.Id, futurePrefix) {
				return refuse("target", "a dead-letter reply to actor %q", target.Id)
			}
			if e.Sender != 0 {
				return refuse("reply_address", "a dead-letter reply naming a sender")
			}
			asked, waiting := l.futures.Load(target.Id)
			if !waiting {
				b.Envelopes[i], drop = nil, drop+1
				continue
			}
			if !s.speaksFor(asked.(string)) {
				return refuse("identity", "a dead-letter reply to a request made to %s, from another peer", asked)
			}
		default:
			return refuse("type", "envelope %d has type %q", i, typ)
		}
	}
	if drop > 0 {
		l.met.Add(metrics.ClusterRefused, uint64(drop), "late_reply")
		kept := b.Envelopes[:0]
		for _, e := range b.Envelopes {
			if e != nil {
				kept = append(kept, e)
			}
		}
		b.Envelopes = kept
	}
	return nil
}

// speaksFor reports whether this stream is member id's: its certificate
// names that member (TLS), or it already carried that member's envelopes.
func (s *guardedStream) speaksFor(id string) bool {
	if s.from != "" {
		return s.from == id
	}
	if !s.g.tls {
		return false // an anonymous plaintext stream speaks for no one
	}
	m, ok := s.g.l.place().Member(id)
	return ok && m.Name == s.name
}

// checkSender: from is a current member, carried by the peer's certificate
// (TLS), and the same member for the whole stream.
func (s *guardedStream) checkSender(from string) *refusal {
	if s.from != "" && from != s.from {
		return refuse("identity", "the stream of member %s carries a message from %q", s.from, from)
	}
	m, ok := s.g.l.place().Member(from)
	if !ok {
		return refuse("not_member", "%q is not a current member", from)
	}
	if s.g.tls && m.Name != s.name {
		return refuse("identity", "member %s is node %q, but the connection's certificate names %q", from, m.Name, s.name)
	}
	s.from = from
	return nil
}
