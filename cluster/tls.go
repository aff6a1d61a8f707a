package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot/internal/slots"
	"google.golang.org/grpc/credentials"
)

// TLSFiles are a node's cluster TLS files.
type TLSFiles struct {
	// CAFile is the PEM bundle of trusted cluster CAs (two during a rotation).
	CAFile string
	// CertFile and KeyFile are this node's certificate (issued by a CA of the
	// bundle, naming the node) and its private key.
	CertFile, KeyFile string
}

// Identity is a loaded node certificate and the CAs it trusts. Immutable.
type Identity struct {
	// Name is the node's name, from its certificate.
	Name     string
	NotAfter time.Time
	cert     tls.Certificate
	roots    *x509.CertPool
	cas      int
}

// LoadIdentity reads and checks a node's TLS files: the key matches the
// certificate, the certificate names a node, chains to a CA of the bundle
// and is valid now. Errors name the file.
func LoadIdentity(f TLSFiles) (*Identity, error) {
	caPEM, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file %s: %v", f.CAFile, err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		if !c.IsCA {
			return nil, fmt.Errorf("cluster.tls.ca_file %s: %q is not a CA certificate", f.CAFile, c.Subject.CommonName)
		}
		roots.AddCert(c)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.cert_file/key_file (%s, %s): %v", f.CertFile, f.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.cert_file %s: %v", f.CertFile, err)
	}
	cert.Leaf = leaf
	name := NodeName(leaf)
	if name == "" {
		return nil, fmt.Errorf("cluster.tls.cert_file %s: the certificate names no node (issue one with `moltbot cluster ca issue NAME`)", f.CertFile)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("cluster.tls.cert_file %s: not valid under cluster.tls.ca_file %s: %v", f.CertFile, f.CAFile, err)
	}
	return &Identity{Name: name, NotAfter: leaf.NotAfter, cert: cert, roots: roots, cas: len(cas)}, nil
}

// verify checks a peer's chain against the trusted CAs for usage and
// returns the node name it carries.
func (id *Identity) verify(raw [][]byte, usage x509.ExtKeyUsage) (string, error) {
	if len(raw) == 0 {
		return "", errors.New("the peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return "", fmt.Errorf("bad peer certificate: %v", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: id.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("the peer's certificate is not from the cluster CA: %v", err)
	}
	name := NodeName(certs[0])
	if name == "" {
		return "", errors.New("the peer's certificate names no node")
	}
	return name, nil
}

// Peers resolves certificate names against the current membership.
type Peers interface {
	// NameAt is the name of the current member whose RPC address is rpc.
	NameAt(rpc string) (name string, ok bool)
	// HasName reports whether a current member carries name.
	HasName(name string) bool
}

// Refusal reasons counted by Credentials.OnRefuse.
const (
	RefusedHandshake = "handshake"  // TLS failed: no or bad certificate, wrong CA, timeout
	RefusedNotMember = "not_member" // a valid certificate, but no current member carries its name
	RefusedBusy      = "busy"       // too many handshakes in flight
)

// Credentials are gRPC transport credentials for node-to-node RPC: TLS 1.3
// with a certificate on both sides, verified against the current CA bundle,
// and a peer name that must belong to the current membership (the member
// dialed, or any current member for a connection accepted). The identity
// can be replaced at run time (SetIdentity: certificate or CA rotation).
//
// A peer that has not authenticated holds at most one handshake slot for at
// most HandshakeTimeout; past MaxHandshakes in flight, connections are
// closed at once.
type Credentials struct {
	id       atomic.Pointer[Identity]
	peers    atomic.Pointer[peersBox]
	refusals sync.Map // RPC address -> refusal: a member we dialed proved to be someone else
	slots    slots.Counter
	max      int // handshakes in flight
	timeout  time.Duration
	refuse   func(reason string)
}

type peersBox struct{ p Peers }

// CredentialsConfig tunes Credentials.
type CredentialsConfig struct {
	// HandshakeTimeout bounds an inbound handshake (default 5s).
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds inbound handshakes in flight (default 64).
	MaxHandshakes int
}

// NewCredentials returns credentials for id. Until SetPeers is called every
// peer is refused.
func NewCredentials(id *Identity, cfg CredentialsConfig) *Credentials {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 64
	}
	c := &Credentials{max: cfg.MaxHandshakes, timeout: cfg.HandshakeTimeout}
	c.id.Store(id)
	return c
}

// OnRefuse sets what counts refused connections by reason. Call it before
// the credentials serve.
func (c *Credentials) OnRefuse(fn func(reason string)) { c.refuse = fn }

// Identity is the identity in use.
func (c *Credentials) Identity() *Identity { return c.id.Load() }

// SetIdentity replaces the certificate and CA bundle for new connections.
func (c *Credentials) SetIdentity(id *Identity) { c.id.Store(id) }

// SetPeers sets the membership that peer names are checked against.
func (c *Credentials) SetPeers(p Peers) { c.peers.Store(&peersBox{p}) }

func (c *Credentials) refused(reason string) {
	if c.refuse != nil {
		c.refuse(reason)
	}
}

// refusal is what a dialed member's certificate was refused for, and when.
type refusal struct {
	at  time.Time
	err error
}

// RefusedSince returns why the certificate presented at rpc was refused
// since t (its chain is not the CA's, or it names another node than the
// member there), or nil.
func (c *Credentials) RefusedSince(rpc string, t time.Time) error {
	v, ok := c.refusals.Load(rpc)
	if !ok {
		return nil
	}
	r := v.(refusal)
	if r.at.Before(t) {
		return nil
	}
	return r.err
}

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
