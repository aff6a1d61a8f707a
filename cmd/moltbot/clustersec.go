package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/moltbot/moltbot/cluster"
)

// Where `moltbot cluster ca issue` puts a node's cluster files, inside its
// workspace; they are used when the config names none.
const (
	clusterDir      = "cluster"
	defaultGossip   = "cluster/gossip.key"
	defaultCA       = "cluster/ca.crt"
	defaultNodeCert = "cluster/node.crt"
	defaultNodeKey  = "cluster/node.key"
)

// clusterSecurity is what protects a node's cluster ports: the gossip keys
// and the RPC certificate, as read from their files.
type clusterSecurity struct {
	keyFile string
	keys    [][]byte
	files   cluster.TLSFiles
	id      *cluster.Identity
}

func (n *Node) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(n.Workspace, p)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// loadClusterSecurity reads the gossip keys and the node certificate named
// by cluster.key_file and cluster.tls (relative to the workspace), or found
// at their default places. A cluster that listens or advertises beyond
// loopback needs both, unless cluster.insecure says otherwise.
func (n *Node) loadClusterSecurity() (*clusterSecurity, error) {
	cc := n.Config.Cluster
	sec := &clusterSecurity{}
	sec.keyFile = n.path(cc.KeyFile)
	if sec.keyFile == "" && exists(n.path(defaultGossip)) {
		sec.keyFile = n.path(defaultGossip)
	}
	if sec.keyFile != "" {
		keys, err := cluster.ReadKeyFile(sec.keyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.key_file: %w", err)
		}
		sec.keys = keys
	}
	files := cluster.TLSFiles{CAFile: n.path(cc.TLS.CAFile), CertFile: n.path(cc.TLS.CertFile), KeyFile: n.path(cc.TLS.KeyFile)}
	if files.CAFile == "" && exists(n.path(defaultCA)) {
		files = cluster.TLSFiles{CAFile: n.path(defaultCA), CertFile: n.path(defaultNodeCert), KeyFile: n.path(defaultNodeKey)}
	}
	if files.CAFile != "" {
		id, err := cluster.LoadIdentity(files)
		if err != nil {
			return nil, err
		}
		sec.files, sec.id = files, id
	}
	if cc.Loopback() || cc.Insecure {
		return sec, nil
	}
	var missing []error
	if sec.keys == nil {
		missing = append(missing, fmt.Errorf("cluster.key_file: a cluster beyond loopback (bind %s) needs a gossip key, or anyone who reaches the gossip port joins", cc.Bind))
	}
	if sec.id == nil {
		missing = append(missing, fmt.Errorf("cluster.tls: a cluster beyond loopback (rpc %s) needs a node certificate from the cluster CA, or anyone who reaches the RPC port can read and write conversations", cc.RPCAddr()))
	}
	if len(missing) > 0 {
		missing = append(missing, fmt.Errorf("make them with `moltbot cluster ca init --dir ca` once, then `moltbot cluster ca issue NAME --dir ca --workspace %s --host HOST` per node (or set cluster.insecure: true to run unprotected)", n.Workspace))
		return nil, errors.Join(missing...)
	}
	return sec, nil
}

// logClusterSecurity says at every start how the cluster ports are guarded.
func (n *Node) logClusterSecurity(sec *clusterSecurity) {
	cc := n.Config.Cluster
	switch {
	case cc.Insecure && (sec.keys == nil || sec.id == nil):
		n.Log.Error("cluster.insecure is set: this node's cluster ports are NOT protected; anyone who reaches them joins the cluster, reads and writes every conversation and publishes operator keys",
			"bind", cc.Bind, "rpc", cc.RPCAddr(), "gossip", gossipState(sec), "tls", sec.id != nil)
	case sec.keys == nil || sec.id == nil:
		n.Log.Warn("cluster on loopback without a gossip key and certificates: any process on this host can join it (`moltbot cluster ca init` protects it)",
			"gossip", gossipState(sec), "tls", sec.id != nil)
	}
	if sec.id != nil {
		left := time.Until(sec.id.NotAfter)
		if left < 30*24*time.Hour {
			n.Log.Warn("the node's cluster certificate expires soon: issue a new one and reload (SIGHUP)", "file", sec.files.CertFile, "expires", sec.id.NotAfter.UTC().Format(time.RFC3339))
		}
		n.Log.Info("cluster RPC: mutual TLS", "name", sec.id.Name, "ca_file", sec.files.CAFile, "expires", sec.id.NotAfter.UTC().Format(time.RFC3339))
	}
}

// ReloadCluster re-reads the gossip keys and the node certificate and CA
// bundle (SIGHUP, moltbot keys reload): the rotation of either on a running
// cluster. The node's name cannot change without a restart.
func (n *Node) ReloadCluster() error {
	if n.cl == nil {
		return nil
	}
	sec, err := n.loadClusterSecurity()
	if err != nil {
		return err
	}
	if n.rpcCreds == nil && sec.id != nil {
		return errors.New("cluster.tls: this node started without TLS; restart it to turn TLS on")
	}
	if n.rpcCreds != nil {
		if sec.id == nil {
			return errors.New("cluster.tls: cannot turn TLS off on a running node")
		}
		if old := n.rpcCreds.Identity().Name; sec.id.Name != old {
			return fmt.Errorf("cluster.tls.cert_file %s: names node %q, but this node is %q; restart to change its name", sec.files.CertFile, sec.id.Name, old)
		}
	}
	if err := n.cl.SetKeys(sec.keys); err != nil {
		return fmt.Errorf("cluster.key_file: %w", err)
	}
	if n.rpcCreds != nil {
		n.rpcCreds.SetIdentity(sec.id)
	}
	n.sec = sec
	attrs := []any{"gossip", gossipState(sec)}
	if sec.id != nil {
		attrs = append(attrs, "cert", sec.files.CertFile, "expires", sec.id.NotAfter.UTC().Format(time.RFC3339), "ca_file", sec.files.CAFile)
	}
	n.Log.Info("cluster keys and certificates reloaded", attrs...)
	return nil
}

// gossipState describes the gossip encryption for logs (the attribute
// name must not look like a secret's, or the log redacts it).
func gossipState(sec *clusterSecurity) string {
	switch len(sec.keys) {
	case 0:
		return "plaintext"
	case 1:
		return "encrypted"
	}
	return fmt.Sprintf("encrypted (%d keys accepted, the first encrypts)", len(sec.keys))
}
