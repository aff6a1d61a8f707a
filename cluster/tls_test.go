//go:build !edge

package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// testCA is a cluster CA in a temp dir that issues node identities.
type testCA struct {
	dir           string
	cert, key     []byte
	certFile, all string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := NewCA("test CA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: dir, cert: cert, key: key, certFile: filepath.Join(dir, CACertFile)}
	if err := os.WriteFile(ca.certFile, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// identity issues name's files (trusting caFile) and loads them.
func (ca *testCA) identity(t *testing.T, name, caFile string) (*Identity, TLSFiles) {
	t.Helper()
	cert, key, err := IssueNodeCert(ca.cert, ca.key, name, []string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := TLSFiles{CAFile: caFile, CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	os.WriteFile(f.CertFile, cert, 0o644)
	os.WriteFile(f.KeyFile, key, 0o600)
	id, err := LoadIdentity(f)
	if err != nil {
		t.Fatal(err)
	}
	return id, f
}

// fakePeers is a membership: rpc address -> name.
type fakePeers struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *fakePeers) NameAt(rpc string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.m[rpc]
	return n, ok
}

func (p *fakePeers) HasName(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.m {
		if n == name {
			return true
		}
	}
	return false
}

// serve accepts connections on a loopback listener and runs ServerHandshake.
func serve(t *testing.T, c *Credentials) (addr string, results chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results = make(chan error, 16)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn, info, err := c.ServerHandshake(raw)
				if err == nil {
					if PeerName(info) == "" {
						err = errFake("no peer name")
					}
					conn.Close()
				}
				results <- err
			}()
		}
	}()
	return ln.Addr().String(), results
}

type errFake string

func (e errFake) Error() string { return string(e) }

func dialWith(c *Credentials, addr string) error {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, _, err := c.ClientHandshake(ctx, addr, raw)
	if err == nil {
		conn.Close()
	}
	return err
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	aID, _ := ca.identity(t, "node-a", ca.certFile)
	bID, _ := ca.identity(t, "node-b", ca.certFile)
	var refusals sync.Map
	count := func(r string) {
		v, _ := refusals.LoadOrStore(r, new(int))
		*(v.(*int))++
	}
	srv := NewCredentials(aID, CredentialsConfig{HandshakeTimeout: 500 * time.Millisecond})
	srv.OnRefuse(count)
	addr, results := serve(t, srv)
	peers := &fakePeers{m: map[string]string{}}
	srv.SetPeers(peers)
	cli := NewCredentials(bID, CredentialsConfig{})
	cli.SetPeers(peers)

	// b is not a member yet: refused by the server. (In TLS 1.3 the client
	// finishes first; it learns of the refusal when it reads.)
	peers.m[addr] = "node-a"
	dialWith(cli, addr)
	if err := <-results; err == nil || !strings.Contains(err.Error(), "not a current member") {
		t.Fatalf("server: %v", err)
	}
	// A member: accepted both ways.
	peers.mu.Lock()
	peers.m["127.0.0.1:1"] = "node-b"
	peers.mu.Unlock()
	if err := dialWith(cli, addr); err != nil {
		t.Fatalf("member to member: %v", err)
	}
	if err := <-results; err != nil {
		t.Fatalf("server side: %v", err)
	}
	// The client refuses a server whose certificate names another member.
	peers.mu.Lock()
	peers.m[addr] = "node-c"
	peers.mu.Unlock()
	if err := dialWith(cli, addr); err == nil || !strings.Contains(err.Error(), `"node-a"`) {
		t.Fatalf("impostor server: %v", err)
	}
	<-results
	peers.mu.Lock()
	peers.m[addr] = "node-a"
	peers.mu.Unlock()

	// Another CA's certificate is refused at the handshake.
	other := newTestCA(t)
	evilID, _ := other.identity(t, "node-b", other.certFile)
	raw0, _ := net.Dial("tcp", addr)
	tc0 := tls.Client(raw0, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{evilID.cert}})
	tc0.Handshake()
	tc0.Close()
	if err := <-results; err == nil || !strings.Contains(err.Error(), "not from the cluster CA") {
		t.Fatalf("server on a foreign CA: %v", err)
	}

	// No certificate at all: plain TLS client.
	raw, _ := net.Dial("tcp", addr)
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err := tc.Handshake(); err == nil {
		// TLS 1.3: the client learns of the refusal on its first read.
		tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := tc.Read(make([]byte, 1)); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
	tc.Close()
	if err := <-results; err == nil {
		t.Fatal("server accepted a client without a certificate")
	}

	// TLS 1.2 is refused.
	raw, _ = net.Dial("tcp", addr)
	tc = tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{bID.cert}})
	if err := tc.Handshake(); err == nil {
		t.Fatal("TLS 1.2 was accepted")
	}
	tc.Close()
	<-results

	// A silent peer is dropped at its deadline (how long it waited:
	// TestHandshakeDeadlines, on a fake clock).
	raw, _ = net.Dial("tcp", addr)
	if err := <-results; err == nil {
		t.Fatal("a silent peer passed")
	}
	raw.Close()
	for _, r := range []string{RefusedNotMember, RefusedHandshake} {
		if v, ok := refusals.Load(r); !ok || *(v.(*int)) == 0 {
			t.Errorf("refusal %q not counted", r)
		}
	}
}

// Past MaxHandshakes in flight, new connections are closed at once.
func TestHandshakeSlotsBounded(t *testing.T) {
	ca := newTestCA(t)
	aID, _ := ca.identity(t, "node-a", ca.certFile)
	busy := make(chan struct{}, 100)
	srv := NewCredentials(aID, CredentialsConfig{HandshakeTimeout: 2 * time.Second, MaxHandshakes: 2})
	srv.OnRefuse(func(r string) {
		if r == RefusedBusy {
			busy <- struct{}{}
		}
	})
	srv.SetPeers(&fakePeers{m: map[string]string{}})
	addr, _ := serve(t, srv)
	var conns []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		select {
		case <-busy:
		case <-time.After(time.Second):
			t.Fatalf("only %d of 3 extra handshakes refused as busy", i)
		}
	}
}

// A CA rotation: a bundle of old and new CA trusts certificates of both;
// SetIdentity switches a running node over.
func TestCARotation(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	bundle := filepath.Join(t.TempDir(), "bundle.crt")
	os.WriteFile(bundle, append(append([]byte{}, oldCA.cert...), newCA.cert...), 0o644)
	aOld, _ := oldCA.identity(t, "node-a", oldCA.certFile)
	bNew, _ := newCA.identity(t, "node-b", bundle)
	peers := &fakePeers{m: map[string]string{"127.0.0.1:1": "node-b"}}
	srv := NewCredentials(aOld, CredentialsConfig{})
	srv.SetPeers(peers)
	addr, results := serve(t, srv)
	peers.m[addr] = "node-a"
	cli := NewCredentials(bNew, CredentialsConfig{})
	cli.SetPeers(peers)
	// a trusts only the old CA: b's new certificate is refused.
	dialWith(cli, addr)
	if err := <-results; err == nil {
		t.Fatal("a certificate of an untrusted CA was accepted")
	}
	// a reloads with the bundle (its certificate still from the old CA).
	aBundle, _ := oldCA.identity(t, "node-a", bundle)
	srv.SetIdentity(aBundle)
	if err := dialWith(cli, addr); err != nil {
		t.Fatalf("after the bundle: %v", err)
	}
	if err := <-results; err != nil {
		t.Fatal(err)
	}
	if srv.Identity().cas != 2 {
		t.Fatalf("bundle holds %d CAs", srv.Identity().cas)
	}
}

func TestLoadIdentityErrors(t *testing.T) {
	ca := newTestCA(t)
	_, f := ca.identity(t, "node-a", ca.certFile)
	other := newTestCA(t)
	cases := map[string]TLSFiles{
		"cluster.tls.ca_file":   {CAFile: filepath.Join(t.TempDir(), "missing"), CertFile: f.CertFile, KeyFile: f.KeyFile},
		"not valid under":       {CAFile: other.certFile, CertFile: f.CertFile, KeyFile: f.KeyFile},
		"cert_file/key_file":    {CAFile: ca.certFile, CertFile: f.CertFile, KeyFile: f.CertFile},
		"is not a CA":           {CAFile: f.CertFile, CertFile: f.CertFile, KeyFile: f.KeyFile},
		"no PEM CERTIFICATE":    {CAFile: f.KeyFile, CertFile: f.CertFile, KeyFile: f.KeyFile},
		"names no node":         noNameFiles(t, ca),
		"certificate has expir": expiredFiles(t, ca),
	}
	for want, files := range cases {
		if _, err := LoadIdentity(files); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q, got %v", want, err)
		}
	}
	if _, _, err := IssueNodeCert(ca.cert, ca.key, "bad name!", nil, time.Hour, time.Now()); err == nil {
		t.Error("a bad node name was issued")
	}
	if _, _, err := IssueNodeCert(ca.cert, other.key, "n", nil, time.Hour, time.Now()); err == nil {
		t.Error("issued with a key that is not the CA's")
	}
}

func writeLeaf(t *testing.T, ca *testCA, tmpl *x509.Certificate) TLSFiles {
	caCert, _ := parseCert(ca.cert)
	caKey, _ := parseKey(ca.key)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := marshalKey(key)
	dir := t.TempDir()
	f := TLSFiles{CAFile: ca.certFile, CertFile: filepath.Join(dir, "n.crt"), KeyFile: filepath.Join(dir, "n.key")}
	os.WriteFile(f.CertFile, pemBlock("CERTIFICATE", der), 0o644)
	os.WriteFile(f.KeyFile, kp, 0o600)
	return f
}

func noNameFiles(t *testing.T, ca *testCA) TLSFiles {
	return writeLeaf(t, ca, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "has spaces!"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
}

func expiredFiles(t *testing.T, ca *testCA) TLSFiles {
	return writeLeaf(t, ca, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "old"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
}

// One address cannot take every handshake slot; a silent connection gives
// its slot back at its deadline; and the handshake deadline still holds
// after the TLS handshake, until gRPC has read the HTTP/2 preface (a member
// that handshakes and then stays silent is dropped). The deadlines' lengths
// are TestHandshakeDeadlines'.
func TestHandshakeSlotsPerAddressAndDeadlines(t *testing.T) {
	ca := newTestCA(t)
	aID, _ := ca.identity(t, "node-a", ca.certFile)
	bID, _ := ca.identity(t, "node-b", ca.certFile)
	busy := make(chan struct{}, 100)
	srv := NewCredentials(aID, CredentialsConfig{HandshakeTimeout: 3 * time.Second, MaxHandshakes: 64})
	srv.OnRefuse(func(r string) {
		if r == RefusedBusy {
			busy <- struct{}{}
		}
	})
	peers := &fakePeers{m: map[string]string{"127.0.0.1:1": "node-b"}}
	srv.SetPeers(peers)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers.m[ln.Addr().String()] = "node-a"
	type res struct {
		err  error
		read error
	}
	out := make(chan res, 64)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn, _, err := srv.ServerHandshake(raw)
				if err != nil {
					out <- res{err: err}
					return
				}
				_, rerr := conn.Read(make([]byte, 1)) // the HTTP/2 preface that never comes
				out <- res{read: rerr}
				conn.Close()
			}()
		}
	}()
	var conns []net.Conn
	for i := 0; i < maxHandshakesPerAddr+3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i := 0; i < 3; i++ {
		select {
		case <-busy:
		case <-time.After(2 * time.Second):
			t.Fatalf("only %d of 3 handshakes past the per-address bound refused", i)
		}
	}
	for i := 0; i < maxHandshakesPerAddr+3; i++ {
		r := <-out
		if r.err == nil {
			t.Fatal("a silent connection passed the handshake")
		}
	}
	for _, c := range conns {
		c.Close()
	}
	// A member that completes TLS and then says nothing is cut at the
	// handshake deadline.
	cli := NewCredentials(bID, CredentialsConfig{})
	cli.SetPeers(peers)
	raw, _ := net.Dial("tcp", ln.Addr().String())
	conn, _, err := cli.ClientHandshake(context.Background(), ln.Addr().String(), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := <-out
	if r.err != nil || r.read == nil {
		t.Fatalf("a silent member after its handshake: %+v", r)
	}
}

// How long a silent peer holds its handshake slot, exactly: on synctest's
// fake clock over an in-memory pipe (the TCP tests above check what is
// refused, not how long it took). Silent before its ClientHello: the
// hello deadline (helloTimeout, or HandshakeTimeout when shorter); silent
// after the TLS handshake (no HTTP/2 preface): HandshakeTimeout in all.
func TestHandshakeDeadlines(t *testing.T) {
	for _, tc := range []struct {
		name        string
		timeout     time.Duration
		handshakes  bool // the client completes TLS, then says nothing
		want        time.Duration
		wantHandErr bool
	}{
		{"silent before TLS", 3 * time.Second, false, helloTimeout, true},
		{"silent before TLS, short handshake timeout", 500 * time.Millisecond, false, 500 * time.Millisecond, true},
		{"silent after TLS", 3 * time.Second, true, 3 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Certificates made inside the bubble: valid on its clock.
				ca := newTestCA(t)
				aID, _ := ca.identity(t, "node-a", ca.certFile)
				bID, _ := ca.identity(t, "node-b", ca.certFile)
				peers := &fakePeers{m: map[string]string{"a:1": "node-a", "b:1": "node-b"}}
				srv := NewCredentials(aID, CredentialsConfig{HandshakeTimeout: tc.timeout})
				srv.SetPeers(peers)
				client, server := net.Pipe()
				defer client.Close()
				t0 := time.Now()
				var held time.Duration
				var handErr, readErr error
				done := make(chan struct{})
				go func() {
					defer close(done)
					conn, _, err := srv.ServerHandshake(server)
					handErr = err
					if err == nil {
						_, readErr = conn.Read(make([]byte, 1)) // the HTTP/2 preface that never comes
						conn.Close()
					}
					held = time.Since(t0)
				}()
				if tc.handshakes {
					cli := NewCredentials(bID, CredentialsConfig{})
					cli.SetPeers(peers)
					conn, _, err := cli.ClientHandshake(t.Context(), "a:1", client)
					if err != nil {
						t.Fatal(err)
					}
					go io.Copy(io.Discard, conn) // session tickets; then silence
				}
				<-done
				if (handErr != nil) != tc.wantHandErr || !tc.wantHandErr && readErr == nil || held != tc.want {
					t.Fatalf("handshake %v, read %v, slot held %v; want %v", handErr, readErr, held, tc.want)
				}
			})
		})
	}
}
