package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/urfave/cli/v2"
)

// certSource serves the API port's certificate (server.tls) and replaces it
// on reload. Handshakes read it through GetCertificate, so a new certificate
// takes effect with the next connection and open connections keep theirs.
type certSource struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// newCertSource loads the pair; relative paths are relative to ws.
func newCertSource(ws, certFile, keyFile string) (*certSource, error) {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(ws, p)
	}
	c := &certSource{certFile: abs(certFile), keyFile: abs(keyFile)}
	return c, c.load()
}

// load reads both files and swaps the certificate in; on any error the
// certificate in use stays and the error names the files.
func (c *certSource) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("server.tls: cannot load cert_file %s with key_file %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&pair)
	return nil
}

func (c *certSource) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// config is the server side: TLS 1.2 at least (Go's default suites, all
// with forward secrecy and AEAD; 1.3 preferred when the client has it).
func (c *certSource) config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
}

func caFileFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "ca-file", EnvVars: []string{"MOLTBOT_CA_FILE"},
		Usage: "PEM certificates to trust for an https:// node, besides the system's (SSL_CERT_FILE replaces those)"}
}

// clientTLS is the TLS config of CLI clients: the system roots plus the
// certificates of --ca-file and of extra files (the workspace's own
// server.tls.cert_file, so a self-signed node's admin commands work).
// Without either it returns nil (Go's defaults).
func clientTLS(c *cli.Context, extra ...string) (*tls.Config, error) {
	files := extra
	if f := c.String("ca-file"); f != "" {
		files = append([]string{f}, files...)
	}
	if len(files) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !pool.AppendCertsFromPEM(b) {
			if i == 0 && c.String("ca-file") != "" {
				if err == nil {
					err = fmt.Errorf("no PEM certificate in %s", f)
				}
				return nil, fail(2, "--ca-file: %v", err)
			}
			continue // the workspace's certificate is a convenience
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// httpClient is the CLI's HTTP client for a node.
func httpClient(c *cli.Context, extra ...string) (*http.Client, error) {
	tc, err := clientTLS(c, extra...)
	if err != nil || tc == nil {
		return http.DefaultClient, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr}, nil
}
