package actors

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/internal/metrics"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The RPC guard stands between protoactor remote's gRPC server and the
// actor system. protoactor trusts whoever connects: it delivers any message
// of any registered type to any actor by name (system messages included),
// forwards messages addressed to other hosts, and panics on a unary
// ListProcesses call, on an unknown type name and on an out-of-range
// target, sender or type index. Every message batch is checked here before
// protoactor reads it:
//
//   - the only method served is the Receive stream (unary calls: Unimplemented);
//   - each envelope's indices are in range, its serializer is protobuf, and
//     its type is moltbot's Envelope (or a dead-letter reply to a future);
//   - its target is an actor of this node's address, and one of: the agent,
//     a future (a reply to a request of ours), or a turn sink;
//   - its sender is a current member (by the Envelope's from_node), the same
//     member for the whole stream, whose certificate (TLS) names it; its
//     reply address and sender PID are that member's own RPC address;
//   - before Attach (no membership yet) every batch is refused ("not_ready");
//   - a panic anywhere below is recovered and counted.
//
// A refused batch ends the stream (the sender reconnects) and is counted in
// moltbot_cluster_rpc_refused_total{reason}.
type rpcGuard struct {
	l   *Link
	tls bool

	logMu   sync.Mutex
	lastLog time.Time
}

const (
	remoteService   = "/remote.Remoting/"
	receiveMethod   = remoteService + "Receive"
	deadLetterType  = "actor.DeadLetterResponse"
	futurePrefix    = "future$"
	sinkPrefix      = "sink$"
	maxRefusalLogHz = time.Second
)

var envelopeType = string(proto.MessageName(&pb.Envelope{}))

// refusal is a refused message, with the reason counted.
type refusal struct {
	reason string
	detail string
}

func (r *refusal) Error() string { return "cluster: refused: " + r.detail }

func refuse(reason, format string, args ...any) *refusal {
	return &refusal{reason: reason, detail: fmt.Sprintf(format, args...)}
}

func (g *rpcGuard) refused(r *refusal, peerAddr string) {
	if g == nil {
		return
	}
	g.l.met.Inc(metrics.ClusterRefused, r.reason)
	g.logMu.Lock()
	quiet := time.Since(g.lastLog) < maxRefusalLogHz
	if !quiet {
		g.lastLog = time.Now()
	}
	g.logMu.Unlock()
	if !quiet {
		g.l.log.Warn("cluster RPC: refused a message", "reason", r.reason, "detail", r.detail, "peer", peerAddr)
	}
}

// ephemeral reports whether id is one of our unnamed actors of a kind
// (prefix + protoactor's generated id, never a child path).
func ephemeral(id, prefix string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	return ok && rest != "" && !strings.ContainsAny(rest, "/$")
}

// envelopeHeader is what the guard reads of an Envelope: who sent it and
// where it wants replies. The body is left for the receiver.
type envelopeHeader struct {
	from, replyAddress, replyID []byte // aliases of the message's bytes
}

// peekEnvelope reads an Envelope's header fields without decoding its body.
func peekEnvelope(b []byte) (envelopeHeader, error) {
	var h envelopeHeader
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, errors.New("malformed protobuf")
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 2 || num == 4 || num == 5) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return h, errors.New("malformed protobuf")
			}
			switch num {
			case 2:
				h.from = v
			case 4:
				h.replyAddress = v
			case 5:
				h.replyID = v
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return h, errors.New("malformed protobuf")
		}
		b = b[n:]
	}
	return h, nil
}
