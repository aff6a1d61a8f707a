package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// with the given serial to dir/cert.pem and dir/key.pem, and returns its PEM.
func selfSigned(t *testing.T, dir string, serial int64) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "moltbot test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	os.MkdirAll(dir, 0o700)
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM
}

// edgeNode starts an in-process node on a free port from a workspace
// moltbot.yaml with more server: keys and extra YAML, logging to the
// returned buffer.
func edgeNode(t *testing.T, ws, server, extra string) (*Node, *syncBuf) {
	t.Helper()
	port := testutil.FreePort(t)
	if server != "" {
		server = ", " + server
	}
	yaml := fmt.Sprintf(`server: {port: %d, shutdown_timeout: 2s%s}
log: {level: info}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
%s
`, port, server, extra)
	path := filepath.Join(ws, "moltbot.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(logs, nil))}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n, logs
}

// served returns the serial of the certificate a fresh connection gets.
func servedSerial(t *testing.T, url string, pool *x509.CertPool) int64 {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	resp, err := c.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("%d %+v", resp.StatusCode, resp.TLS)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

// Finding 11: the API port serves HTTPS from server.tls (TLS 1.2 at least);
// a reload (SIGHUP calls Node.Reload) serves the new certificate to new
// connections; a certificate that fails to load keeps the old one and the
// error names the file; the CLI clients speak https with --ca-file or the
// workspace's own certificate.
func TestTLSServeAndReload(t *testing.T) {
	ws := t.TempDir()
	dir := filepath.Join(ws, "tls")
	pem1 := selfSigned(t, dir, 1)
	n, logs := edgeNode(t, ws, "tls: {cert_file: tls/cert.pem, key_file: tls/key.pem}", "")
	if !strings.HasPrefix(n.URL(), "https://") {
		t.Fatalf("URL %s", n.URL())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem1)
	if s := servedSerial(t, n.URL(), pool); s != 1 {
		t.Fatalf("serial %d", s)
	}
	// Plain HTTP and TLS 1.1 are refused.
	if resp, err := http.Get("http://" + n.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served")
		}
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Get(n.URL() + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	// New files, then a reload.
	pem2 := selfSigned(t, dir, 2)
	pool.AppendCertsFromPEM(pem2)
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := servedSerial(t, n.URL(), pool); s != 2 {
		t.Fatalf("after the reload: serial %d", s)
	}
	// A broken file: the reload fails naming it, the current certificate stays.
	os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o600)
	if _, err := n.Reload(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "cert.pem")) {
		t.Fatalf("a broken certificate: %v", err)
	}
	if !strings.Contains(logs.String(), "TLS certificate not reloaded") || !strings.Contains(logs.String(), "cert.pem") {
		t.Fatalf("the failed reload is not logged: %s", logs.String())
	}
	if s := servedSerial(t, n.URL(), pool); s != 2 {
		t.Fatalf("after a failed reload: serial %d", s)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem2, 0o600)

	// HTTP/2 (what Go clients and browsers speak over TLS): a POST without
	// a body needs no Content-Type, one with a body needs JSON.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	for body, want := range map[string]int{"": 201, `{"system":"x"}`: 201} {
		req, _ := http.NewRequest("POST", n.URL()+"/v1/conversations", strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.ProtoMajor != 2 {
			t.Fatalf("h2 POST %q: %s %d", body, resp.Proto, resp.StatusCode)
		}
	}
	if resp, err := h2.Post(n.URL()+"/v1/conversations", "text/plain", strings.NewReader("{}")); err != nil || resp.StatusCode != 415 {
		t.Fatalf("h2 text/plain: %v %v", resp, err)
	}

	// The CLI over https: --ca-file, or the workspace's own certificate.
	cafile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(cafile, pem2, 0o600)
	if code, out, e := runCLI(t, "", "status", "--url", n.URL(), "--ca-file", cafile); code != 0 || !strings.Contains(out, "sim") {
		t.Fatalf("status --ca-file: %d %s %s", code, out, e)
	}
	if code, _, e := runCLI(t, "", "status", "--url", n.URL()); code != 1 || !strings.Contains(e, "certificate") {
		t.Fatalf("status without the CA: %d %s", code, e)
	}
	if code, out, e := runCLI(t, "", "status", "--workspace", ws); code != 0 || !strings.Contains(out, "https://") {
		t.Fatalf("status from the workspace: %d %s %s", code, out, e)
	}
	if code, out, e := runCLI(t, "hello\n", "chat", "--url", n.URL(), "--ca-file", cafile); code != 0 || !strings.Contains(out, "[simulated]") {
		t.Fatalf("chat over https: %d %s %s", code, out, e)
	}
	if code, _, e := runCLI(t, "", "status", "--url", n.URL(), "--ca-file", filepath.Join(ws, "moltbot.yaml")); code != 2 || !strings.Contains(e, "--ca-file") {
		t.Fatalf("a CA file without certificates: %d %s", code, e)
	}
	// A node whose files do not load does not start, naming the key.
	ws2 := t.TempDir()
	cfg, err := configs.Parse(filepath.Join(ws2, "x.yaml"), []byte("server: {port: 0, tls: {cert_file: nope.pem, key_file: nope.key}}\nproviders: [{name: sim, type: sim}]\nmodels: {primary: sim/sim}\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Node{Config: cfg, Workspace: ws2}).Start(); err == nil || !strings.Contains(err.Error(), "x.yaml:1: server.tls") || !strings.Contains(err.Error(), "nope.pem") {
		t.Fatalf("a node with missing certificate files: %v", err)
	}
}

// Finding 9: with auth on, /metrics (tenant ids, auth failures) needs the
// operator unless auth.metrics_open is set; with auth off it stays open.
func TestMetricsClosedWithAuth(t *testing.T) {
	n, _ := edgeNode(t, t.TempDir(), "", "auth: {enabled: true}")
	op, _, err := n.auth.CreateKey(auth.DefaultTenant, "op", auth.ScopeAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	chat, _, _ := n.auth.CreateKey(auth.DefaultTenant, "chat", auth.ScopeChat, 0)
	if code, body := authedGet(t, n.URL()+"/metrics", ""); code != 401 || strings.Contains(body, "moltbot_") {
		t.Fatalf("anonymous /metrics with auth on: %d", code)
	}
	if code, _ := authedGet(t, n.URL()+"/metrics", chat); code != 403 {
		t.Fatalf("a chat key: %d", code)
	}
	if code, body := authedGet(t, n.URL()+"/metrics", op); code != 200 || !strings.Contains(body, "moltbot_auth_failures_total") {
		t.Fatalf("the operator: %d", code)
	}
	open, _ := edgeNode(t, t.TempDir(), "", "auth: {enabled: true, metrics_open: true}")
	if code, _ := authedGet(t, open.URL()+"/metrics", ""); code != 200 {
		t.Fatalf("metrics_open: true: %d", code)
	}
	off, _ := edgeNode(t, t.TempDir(), "", "")
	if code, _ := authedGet(t, off.URL()+"/metrics", ""); code != 200 {
		t.Fatalf("auth off: %d", code)
	}
}

// The node wires the edge settings: a slow body is cut at
// server.read_body_timeout, and the README's curl without a Content-Type
// (form encoding, as curl -d sends) is refused with 415.
func TestNodeEdgeSettings(t *testing.T) {
	n, _ := edgeNode(t, t.TempDir(), "read_body_timeout: 200ms, allowed_hosts: [moltbot.lan]", "")
	c, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/conversations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"system\":")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 408")) || !bytes.Contains(b, []byte("read_body_timeout")) {
		t.Fatalf("slow body: %q", b)
	}
	resp, err := http.Post(n.URL()+"/v1/conversations", "application/x-www-form-urlencoded", strings.NewReader(`{"system":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 415 || !strings.Contains(string(body), "application/json") {
		t.Fatalf("form-encoded JSON: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", n.URL()+"/v1/models", nil)
	req.Host = "moltbot.lan:3000"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("an allowed host: %v %v", resp, err)
	}
	req.Host = "rebound.attacker.test:3000"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("a rebound host: %v %v", resp, err)
	}
}

// Issue #10 (review): one address opened connections until the node ran
// out of file descriptors. Past max_connections_per_client a new
// connection is closed at once, and the node keeps answering others.
func TestNodeConnectionsPerClient(t *testing.T) {
	n, _ := edgeNode(t, t.TempDir(), "max_connections_per_client: 4", "")
	var held []net.Conn
	for i := 0; i < 6; i++ {
		c, err := net.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// Each connection asks for /healthz: a held one is answered, a refused
	// one was closed (EOF or reset). Both are seen, neither is inferred from
	// a read that saw nothing for a while.
	served, closed := 0, 0
	for _, c := range held {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case err == nil && resp.StatusCode == 200:
			served++
		case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
			closed++
		default:
			t.Fatalf("a connection neither served nor closed: %v %v", resp, err)
		}
	}
	if served != 4 || closed != 2 {
		t.Fatalf("%d of 6 connections served, %d closed at once; want 4 and 2", served, closed)
	}
	held[0].Close()
	testutil.Eventually(t, 5*time.Second, "a request once a slot is free", func() bool {
		resp, err := http.Get(n.URL() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	for _, c := range held {
		c.Close()
	}
	testutil.Eventually(t, 5*time.Second, "refused connections counted", func() bool {
		_, text := getBody(t, n.URL()+"/metrics")
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, "moltbot_http_connections_refused_total "); ok {
				k, _ := strconv.Atoi(v)
				return k >= 2 // and more if a probe above came while slots were still held
			}
		}
		return false
	})
}
