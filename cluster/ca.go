package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The cluster CA. Every node holds a certificate issued by it, naming the
// node; node-to-node RPC is mutual TLS 1.3 against the CA bundle, and a
// peer's name must be a current member's (tls.go). Keys are ECDSA P-256.
//
// Rotation without downtime: a node trusts every CA in its ca_file (a PEM
// bundle). Add the new CA to every node's bundle and reload (SIGHUP); issue
// each node a certificate from the new CA and reload; then drop the old CA
// from the bundles and reload.

// Default file names in a CA directory and for issued certificates.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// nodeURIScheme marks a node certificate's name in its URI SAN.
const nodeURIScheme = "moltbot"

// ValidNodeName reports whether name can name a node in its certificate:
// 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit.
// (Checked by hand: the regular expression it was, compiled when the
// package started, cost 848 allocations at every start of every node.)
func ValidNodeName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func marshalKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

// NewCA makes a self-signed cluster CA valid for validity from now. It
// returns the certificate and the private key, PEM-encoded.
func NewCA(name string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if name == "" {
		name = "moltbot cluster CA"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"moltbot"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return sign(tmpl, tmpl, key, key)
}

// sign makes the certificate tmpl for key, signed by parent's signer, and
// returns both PEM-encoded.
func sign(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = marshalKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, nil
}

// IssueNodeCert issues a certificate for node name, signed by the CA. hosts
// (IP addresses or DNS names the node is reached at) go into its SANs for
// tools that check them; moltbot itself checks the name against the member
// it dialed or that dialed it.
func IssueNodeCert(caCertPEM, caKeyPEM []byte, name string, hosts []string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if !ValidNodeName(name) {
		return nil, nil, fmt.Errorf("cluster: node name %q: use 1-63 letters, digits, '.', '_' or '-'", name)
	}
	ca, err := parseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("cluster: the CA certificate is not a CA")
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: CA key: %w", err)
	}
	if !caKey.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, errors.New("cluster: the CA key does not belong to the CA certificate")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"moltbot"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{{Scheme: nodeURIScheme, Opaque: "node:" + name}},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return sign(tmpl, ca, key, caKey)
}

// NodeName is the node name a certificate carries (its moltbot URI SAN,
// else its common name); "" when it names none.
func NodeName(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == nodeURIScheme {
			if n, ok := strings.CutPrefix(u.Opaque, "node:"); ok && ValidNodeName(n) {
				return n
			}
		}
	}
	if ValidNodeName(c.Subject.CommonName) {
		return c.Subject.CommonName
	}
	return ""
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parseCerts reads every certificate of a PEM bundle.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("want an ECDSA key, got %T", k)
	}
	return ek, nil
}

// WriteFileExcl writes b to path with mode, refusing to replace a file
// unless force.
func WriteFileExcl(path string, b []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !force {
		flags |= os.O_EXCL
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists (use --force to replace it)", path)
		}
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
