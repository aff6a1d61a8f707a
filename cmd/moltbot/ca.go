package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moltbot/moltbot/cluster"
	"github.com/urfave/cli/v2"
)

const gossipKeyFile = "gossip.key"

func newGossipKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return []byte(base64.StdEncoding.EncodeToString(k) + "\n")
}

type fileOut struct {
	path string
	b    []byte
	mode os.FileMode
}

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "the cluster CA: init once, issue a certificate per node",
		Description: `Nodes of a cluster talk over mutual TLS 1.3: each holds a certificate naming
it, issued by the cluster CA, and accepts only peers whose certificate names a
current member. Gossip is encrypted with a shared key. A node bound beyond
loopback does not start without both.

   moltbot cluster ca init --dir ca
   moltbot cluster ca issue n1 --dir ca --workspace /srv/n1 --host 10.0.0.1

The first writes ca/ca.crt, ca/ca.key (keep it off the nodes) and ca/gossip.key.
The second writes the node's files into WORKSPACE/cluster/ (ca.crt, node.crt,
node.key, gossip.key), where moltbot start finds them. See docs/SECURITY.md for
rotating the CA and the gossip key on a running cluster.`,
		Subcommands: []*cli.Command{caInitCommand(), caIssueCommand()},
	}
}

func caInitCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a cluster CA (ca.crt, ca.key) and a gossip key",
		Description: `Creates DIR/ca.crt (the CA certificate, public), DIR/ca.key (its private key,
mode 0600: whoever holds it can make members) and, unless it exists,
DIR/gossip.key (the gossip encryption key, mode 0600). Refuses to replace an
existing CA unless --force.

Examples:
   moltbot cluster ca init --dir ca
   moltbot cluster ca init --dir ca-2027 --name "moltbot CA 2027"   # a new CA for a rotation`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: "ca", Usage: "directory for ca.crt, ca.key and gossip.key"},
			&cli.StringFlag{Name: "name", Value: "moltbot cluster CA", Usage: "the CA's common name"},
			&cli.DurationFlag{Name: "validity", Value: 10 * 365 * 24 * time.Hour, Usage: "how long the CA is valid"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing CA"},
		},
		Action: func(c *cli.Context) error {
			if pos, err := args(c); err != nil {
				return err
			} else if len(pos) > 0 {
				return fail(2, "ca init takes no arguments (got %q); use --dir", pos[0])
			}
			if c.Duration("validity") <= 0 {
				return fail(2, "--validity: must be positive")
			}
			dir := c.String("dir")
			cert, key, err := cluster.NewCA(c.String("name"), c.Duration("validity"), time.Now())
			if err != nil {
				return fail(1, "%v", err)
			}
			force := c.Bool("force")
			keyPath, certPath := filepath.Join(dir, cluster.CAKeyFile), filepath.Join(dir, cluster.CACertFile)
			if err := cluster.WriteFileExcl(keyPath, key, 0o600, force); err != nil {
				return fail(1, "%v", err)
			}
			if err := cluster.WriteFileExcl(certPath, cert, 0o644, force); err != nil {
				return fail(1, "%v", err)
			}
			fmt.Fprintf(c.App.Writer, "wrote %s and %s (keep the key off the nodes: whoever holds it can make members)\n", certPath, keyPath)
			gk := filepath.Join(dir, gossipKeyFile)
			if !exists(gk) {
				if err := cluster.WriteFileExcl(gk, newGossipKey(), 0o600, false); err != nil {
					return fail(1, "%v", err)
				}
				fmt.Fprintf(c.App.Writer, "wrote %s (the gossip key every node shares)\n", gk)
			}
			fmt.Fprintf(c.App.Writer, "next, per node: moltbot cluster ca issue NAME --dir %s --workspace WORKSPACE --host HOST\n", dir)
			return nil
		},
	}
}

func caIssueCommand() *cli.Command {
	return &cli.Command{
		Name:      "issue",
		Usage:     "issue a node certificate and install the node's cluster files",
		ArgsUsage: "NAME",
		Description: `Issues a certificate naming the node NAME (1-63 letters, digits, '.', '_', '-';
unique in the cluster), signed by DIR/ca.key, and writes into
WORKSPACE/cluster/: node.crt, node.key (0600), and, when the node has none yet,
ca.crt (the CA bundle to trust) and gossip.key (0600, when DIR has one).
moltbot start uses them when the config names no other files. --force
replaces the node's certificate and key (a renewal, or a CA rotation); the
bundle and gossip key are never replaced. --host adds the node's addresses to the
certificate for other tools; moltbot checks the name against membership.
With --out, the certificate and key go to OUT/NAME.crt and OUT/NAME.key only.

Examples:
   moltbot cluster ca issue n1 --dir ca --workspace /srv/n1 --host 10.0.0.1
   moltbot cluster ca issue n2 --dir ca-2027 --workspace /srv/n2 --force   # a certificate from a new CA`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: "ca", Usage: "the CA directory (ca.crt, ca.key, gossip.key)"},
			workspaceFlag(),
			&cli.StringFlag{Name: "out", Usage: "write NAME.crt and NAME.key to this directory instead of a workspace"},
			&cli.StringSliceFlag{Name: "host", Usage: "an IP address or DNS name of the node (repeatable)"},
			&cli.DurationFlag{Name: "validity", Value: 365 * 24 * time.Hour, Usage: "how long the certificate is valid (capped at the CA's end)"},
			&cli.BoolFlag{Name: "force", Usage: "replace the node's existing certificate and key"},
		},
		Action: func(c *cli.Context) error {
			name, err := oneArg(c, "moltbot cluster ca issue NAME [--dir CA] [--workspace W | --out DIR] [--host H]...")
			if err != nil {
				return err
			}
			if !cluster.ValidNodeName(name) {
				return fail(2, "NAME %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
			}
			if c.Duration("validity") <= 0 {
				return fail(2, "--validity: must be positive")
			}
			dir := c.String("dir")
			caCert, err := os.ReadFile(filepath.Join(dir, cluster.CACertFile))
			if err != nil {
				return fail(1, "--dir: %v (run `moltbot cluster ca init --dir %s` first)", err, dir)
			}
			caKey, err := os.ReadFile(filepath.Join(dir, cluster.CAKeyFile))
			if err != nil {
				return fail(1, "--dir: %v", err)
			}
			var hosts []string
			for _, h := range c.StringSlice("host") {
				hosts = append(hosts, strings.Split(h, ",")...)
			}
			cert, key, err := cluster.IssueNodeCert(caCert, caKey, name, hosts, c.Duration("validity"), time.Now())
			if err != nil {
				return fail(1, "%v", err)
			}
			force := c.Bool("force")
			if out := c.String("out"); out != "" {
				cp, kp := filepath.Join(out, name+".crt"), filepath.Join(out, name+".key")
				if err := cluster.WriteFileExcl(kp, key, 0o600, force); err != nil {
					return fail(1, "%v", err)
				}
				if err := cluster.WriteFileExcl(cp, cert, 0o644, force); err != nil {
					return fail(1, "%v", err)
				}
				fmt.Fprintf(c.App.Writer, "wrote %s and %s for node %q\n", cp, kp, name)
				return nil
			}
			ws := c.String("workspace")
			cd := filepath.Join(ws, clusterDir)
			files := []fileOut{{filepath.Join(ws, defaultNodeKey), key, 0o600}, {filepath.Join(ws, defaultNodeCert), cert, 0o644}}
			// The bundle and the gossip key are the cluster's: written when
			// the node has none, never replaced (a rotation edits them).
			var kept []string
			if !exists(filepath.Join(ws, defaultCA)) {
				files = append(files, fileOut{filepath.Join(ws, defaultCA), caCert, 0o644})
			} else {
				kept = append(kept, defaultCA)
			}
			if gk, err := os.ReadFile(filepath.Join(dir, gossipKeyFile)); err == nil {
				if !exists(filepath.Join(ws, defaultGossip)) {
					files = append(files, fileOut{filepath.Join(ws, defaultGossip), gk, 0o600})
				} else {
					kept = append(kept, defaultGossip)
				}
			}
			for _, f := range files {
				if err := cluster.WriteFileExcl(f.path, f.b, f.mode, force); err != nil {
					return fail(1, "%v", err)
				}
			}
			fmt.Fprintf(c.App.Writer, "node %q: wrote its certificate and key to %s (moltbot start -w %s uses them)\n", name, cd, ws)
			if len(kept) > 0 {
				fmt.Fprintf(c.App.Writer, "kept the node's %s (the cluster's; edit them to rotate, see docs/SECURITY.md)\n", strings.Join(kept, " and "))
			}
			return nil
		},
	}
}

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "print a new gossip key (for cluster.key_file)",
		Description: `Prints a new random 32-byte gossip key, base64. To rotate the key of a running
cluster, put the new key on the first line of every node's key file above the
old one and reload (SIGHUP); once every node has it, remove the old line and
reload again (docs/SECURITY.md).

Examples:
   moltbot cluster keygen > new.key
   moltbot cluster keygen --out /srv/n1/cluster/gossip.key`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "out", Usage: "write the key to this file (mode 0600; refuses to replace one)"}},
		Action: func(c *cli.Context) error {
			k := newGossipKey()
			if out := c.String("out"); out != "" {
				if err := cluster.WriteFileExcl(out, k, 0o600, false); err != nil {
					return fail(1, "%v", err)
				}
				fmt.Fprintf(c.App.Writer, "wrote %s\n", out)
				return nil
			}
			c.App.Writer.Write(k)
			return nil
		},
	}
}
