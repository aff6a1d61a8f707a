//go:build edge

package main

import (
	"errors"

	"github.com/moltbot/moltbot/configs"
	"github.com/urfave/cli/v2"
)

// The edge build (make build-edge: -tags edge,urfave_cli_no_docs) leaves
// out what a node on a small device does not run:
//
//   - the cluster engine: memberlist's gossip, protoactor's remote, gRPC
//     and the cluster package's transport and RPC credentials (the
//     default build's cluster/gossip.go, transport.go, tls_grpc.go and
//     actors/remote_rpc.go, guard_rpc.go). A config that sets
//     cluster.bind or cluster.join is refused at start (clusterRefused);
//     what stays of the cluster package is what one node and the admin
//     commands use (Config, the ring, node certificates, gossip keys);
//   - the simulator's HTTP servers (`moltbot sim`: the Ollama, OpenAI and
//     Anthropic wires, sim.go); the in-process sim provider, the demo
//     preset's fallback, stays;
//   - the load generator (`moltbot bench`, with its HTML report).
//   - the JavaScript skills' worker: make build-edge does not build
//     moltbot-skills (goja, 10 MB). A node whose skills/ holds .js files
//     and finds no worker starts without its skills and warns, naming
//     skills.worker (skillstage.go); the node's side is in every build.
//
// urfave/cli's man page and markdown generators are out of every build
// made by make (urfave_cli_no_docs), and so is gRPC's request tracing
// (grpcnotrace). Everything a single node serves
// stays. Its size budget is checked beside the default build's
// (bench/measure's TestSizeBudget, make size-check); BENCHMARKS.md has
// both builds' sizes and idle RSS.

// edgeBuild: this is the edge build.
const edgeBuild = true

// benchCommand is not in the edge build.
func benchCommand() *cli.Command { return nil }

// simCommand is not in the edge build: the simulator's HTTP servers stay
// out (the in-process sim provider stays in).
func simCommand() *cli.Command { return nil }

// clusterRefused refuses a config that asks for a cluster: this build has
// no cluster engine.
func clusterRefused(cfg *configs.Config) error {
	switch {
	case cfg.Cluster.Bind != "":
		return errors.New("cluster.bind (--cluster-bind) is set, but this build (edge) has no cluster engine: use the default build (make build) to run a cluster")
	case len(cfg.Cluster.Join) > 0:
		return errors.New("cluster.join (--join) is set, but this build (edge) has no cluster engine: use the default build (make build) to run a cluster")
	}
	return nil
}
