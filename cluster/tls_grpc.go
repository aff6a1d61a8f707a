//go:build !edge

package cluster

// Credentials as gRPC transport credentials: the TLS handshakes of
// node-to-node RPC. Not in the edge build, which has no cluster RPC.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/moltbot/moltbot/internal/slots"
	"google.golang.org/grpc/credentials"
)

// errRefused is returned for a peer refused after a valid TLS handshake.
type errRefused struct{ msg string }

func (e *errRefused) Error() string   { return e.msg }
func (e *errRefused) Temporary() bool { return true } // membership may catch up: gRPC retries with backoff

func (c *Credentials) config() *tls.Config {
	id := c.id.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		NextProtos:   []string{"h2"},
		// Chains are verified in VerifyConnection against the bundle in
		// use at that moment (it changes during a CA rotation); the name
		// is a node's, not a host's.
		InsecureSkipVerify: true,
		ClientAuth:         tls.RequireAnyClientCert,
	}
}

// ClientHandshake dials a member: its certificate must chain to a trusted CA
// and name the member whose RPC address is authority.
func (c *Credentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	id := c.id.Load()
	cfg := c.config()
	cfg.VerifyConnection = func(st tls.ConnectionState) error {
		name, err := id.verify(rawCerts(st), x509.ExtKeyUsageServerAuth)
		if err != nil {
			c.refusals.Store(authority, refusal{time.Now(), err})
			return err
		}
		pb := c.peers.Load()
		if pb == nil {
			return &errRefused{"cluster: membership unknown yet"}
		}
		want, ok := pb.p.NameAt(authority)
		if !ok {
			return &errRefused{fmt.Sprintf("cluster: %s is no current member's RPC address", authority)}
		}
		if name != want {
			err := &errRefused{fmt.Sprintf("cluster: %s presented a certificate for node %q, but member %q is there", authority, name, want)}
			c.refusals.Store(authority, refusal{time.Now(), err})
			return err
		}
		c.refusals.Delete(authority)
		return nil
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, authInfo(conn), nil
}

// ServerHandshake accepts a member: its certificate must chain to a trusted
// CA and name a current member. A peer holds a handshake slot (at most
// maxHandshakesPerAddr per address, MaxHandshakes in all) for at most
// helloTimeout before its first bytes and HandshakeTimeout in all; the
// deadline stays until gRPC has read the peer's HTTP/2 preface too (gRPC
// clears it).
func (c *Credentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	release, ok := c.slots.Take(slots.KeyOf(raw.RemoteAddr()), maxHandshakesPerAddr, c.max)
	if !ok {
		c.refused(RefusedBusy)
		raw.Close()
		return nil, nil, errors.New("cluster: too many RPC handshakes in flight")
	}
	defer release()
	id := c.id.Load()
	cfg := c.config()
	var notMember bool
	cfg.VerifyConnection = func(st tls.ConnectionState) error {
		name, err := id.verify(rawCerts(st), x509.ExtKeyUsageClientAuth)
		if err != nil {
			return err
		}
		if pb := c.peers.Load(); pb == nil || !pb.p.HasName(name) {
			notMember = true
			return fmt.Errorf("cluster: node %q is not a current member", name)
		}
		return nil
	}
	start := time.Now()
	_ = raw.SetDeadline(start.Add(min(helloTimeout, c.timeout)))
	conn := tls.Server(&helloConn{Conn: raw, full: start.Add(c.timeout)}, cfg)
	if err := conn.Handshake(); err != nil {
		if notMember {
			c.refused(RefusedNotMember)
		} else {
			c.refused(RefusedHandshake)
		}
		conn.Close()
		return nil, nil, err
	}
	return conn, authInfo(conn), nil
}

// helloTimeout is how long a connection may stay silent before its TLS
// ClientHello.
const helloTimeout = time.Second

// maxHandshakesPerAddr bounds the handshakes one address (an IPv6 /64)
// holds at once, so that one host cannot take every slot.
const maxHandshakesPerAddr = 8

// helloConn gives a connection its full handshake deadline once its first
// bytes arrive.
type helloConn struct {
	net.Conn
	full     time.Time
	extended bool
}

func (h *helloConn) Read(b []byte) (int, error) {
	n, err := h.Conn.Read(b)
	if n > 0 && !h.extended {
		h.extended = true
		_ = h.Conn.SetDeadline(h.full)
	}
	return n, err
}

func rawCerts(st tls.ConnectionState) [][]byte {
	out := make([][]byte, len(st.PeerCertificates))
	for i, c := range st.PeerCertificates {
		out[i] = c.Raw
	}
	return out
}

func authInfo(conn *tls.Conn) credentials.TLSInfo {
	return credentials.TLSInfo{State: conn.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
}

// PeerName is the node name in an authenticated connection's info ("" when
// the connection is not TLS).
func PeerName(info credentials.AuthInfo) string {
	ti, ok := info.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	return NodeName(ti.State.PeerCertificates[0])
}

// Info describes the protocol.
func (c *Credentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

// Clone returns c itself: its state is shared on purpose (reloads reach
// every connection made after them).
func (c *Credentials) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is not supported: names are checked against members.
func (c *Credentials) OverrideServerName(string) error { return nil }
