//go:build !race && !edge

// Mutual TLS between in-process nodes (see cluster_test.go for why these
// build without -race): nodes with certificates of a test CA verify each
// other; a peer without TLS, without a certificate, with another CA's, or
// with a member's certificate speaking as another member is refused.

package actors

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

type tlsCA struct {
	dir, caFile string
	cert, key   []byte
}

func newTLSCA(t *testing.T) *tlsCA {
	cert, key, err := cluster.NewCA("test", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := &tlsCA{dir: dir, caFile: filepath.Join(dir, "ca.crt"), cert: cert, key: key}
	os.WriteFile(ca.caFile, cert, 0o644)
	return ca
}

func (ca *tlsCA) files(t *testing.T, name string) cluster.TLSFiles {
	cert, key, err := cluster.IssueNodeCert(ca.cert, ca.key, name, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := cluster.TLSFiles{CAFile: ca.caFile, CertFile: filepath.Join(dir, "node.crt"), KeyFile: filepath.Join(dir, "node.key")}
	os.WriteFile(f.CertFile, cert, 0o644)
	os.WriteFile(f.KeyFile, key, 0o600)
	return f
}

func (ca *tlsCA) creds(t *testing.T, name string) *cluster.Credentials {
	id, err := cluster.LoadIdentity(ca.files(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return cluster.NewCredentials(id, cluster.CredentialsConfig{HandshakeTimeout: time.Second})
}

// A cluster over mutual TLS works as one without it; a process without a
// valid certificate is refused at the handshake; a valid certificate of a
// non-member is refused; a member cannot speak as another member.
func TestClusterMutualTLS(t *testing.T) {
	ca := newTLSCA(t)
	n1 := startNodeWith(t, nodeOpts{sim: fastSimOpts(), creds: ca.creds(t, "n1")})
	n2 := startNodeWith(t, nodeOpts{seed: n1.cl.ID(), sim: fastSimOpts(), creds: ca.creds(t, "n2")})
	n3 := startNodeWith(t, nodeOpts{seed: n1.cl.ID(), sim: fastSimOpts(), creds: ca.creds(t, "n3")})
	nodes := []*tnode{n1, n2, n3}
	converge(t, nodes)
	testutil.Eventually(t, 10*time.Second, "every member verified by every node", func() bool {
		for _, n := range nodes {
			for _, m := range n.cl.Members() {
				if !m.Verified || m.Refuted || m.Name == "" {
					return false
				}
			}
		}
		return true
	})
	serving(t, nodes, "forming the TLS cluster")
	addr := n1.rt.Link().RemoteAddress()
	agent := actor.NewPID(addr, agentName)
	hello := envBytes(t, &pb.Envelope{Protocol: cluster.Protocol, FromNode: n2.cl.ID(), Body: &pb.Envelope_Hello{Hello: &pb.Hello{}}})

	// Plain gRPC, no TLS.
	if err := newAttacker(t, addr, nil).send(batch(agent, envelopeType, hello)); err == nil {
		t.Fatal("a plaintext client was served")
	}
	// TLS without a client certificate; with another CA's certificate.
	other := newTLSCA(t)
	foreign, _ := cluster.LoadIdentity(other.files(t, "n2"))
	for name, dial := range map[string]grpc.DialOption{
		"no certificate": grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})),
		"another CA":     grpc.WithTransportCredentials(cluster.NewCredentials(foreign, cluster.CredentialsConfig{})),
		"a non-member":   grpc.WithTransportCredentials(withPeers(ca.creds(t, "n9"), n1)),
	} {
		if err := newAttacker(t, addr, dial).send(batch(agent, envelopeType, hello)); err == nil {
			t.Errorf("%s: served", name)
		}
	}
	// The server side of a refused handshake may finish after the client
	// has given up: wait for the counts.
	testutil.Eventually(t, 10*time.Second, "handshake refusals counted", func() bool {
		return refusedFor(n1, cluster.RefusedHandshake) > 0 && refusedFor(n1, cluster.RefusedNotMember) > 0
	})
	// n2's valid certificate, speaking as n3: refused.
	asN2 := newAttacker(t, addr, grpc.WithTransportCredentials(withPeers(ca.creds(t, "n2"), n1)))
	if err := asN2.accepted(n1, batch(agent, envelopeType, hello)); err != nil {
		t.Fatalf("n2 as itself: %v", err)
	}
	asN3 := envBytes(t, &pb.Envelope{Protocol: cluster.Protocol, FromNode: n3.cl.ID(), Body: &pb.Envelope_Hello{Hello: &pb.Hello{}}})
	if err := asN2.send(batch(agent, envelopeType, asN3)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("n2 speaking as n3: %v", err)
	}
	serving(t, nodes, "TLS attacks")

	// A node that joins the gossip with a certificate of another CA is
	// refuted by every member and kept off their rings (it holds nothing).
	evil := startNodeWith(t, nodeOpts{seed: n1.cl.ID(), sim: fastSimOpts(), creds: other.creds(t, "n4")})
	testutil.Eventually(t, 15*time.Second, "the foreign node refuted everywhere", func() bool {
		for _, n := range nodes {
			m, ok := n.cl.Member(evil.cl.ID())
			if !ok || !m.Refuted || n.rt.link.currentRing().Has(evil.cl.ID()) {
				return false
			}
		}
		return true
	})
	serving(t, nodes, "a foreign node in the gossip")
}

// withPeers makes attacker credentials that accept the victim as a peer.
func withPeers(c *cluster.Credentials, victim *tnode) *cluster.Credentials {
	c.SetPeers(fixedPeers{rpc: victim.rt.Link().RemoteAddress(), name: victim.cl.Name()})
	return c
}

type fixedPeers struct{ rpc, name string }

func (p fixedPeers) NameAt(rpc string) (string, bool) { return p.name, rpc == p.rpc }
func (p fixedPeers) HasName(name string) bool         { return name == p.name }
