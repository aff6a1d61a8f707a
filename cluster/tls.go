package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot/internal/slots"
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
