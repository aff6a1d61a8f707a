//go:build edge

package main

import "github.com/urfave/cli/v2"

// The edge build (make build-edge: -tags edge,urfave_cli_no_docs) leaves
// out what a node on a small device does not run: the load generator
// (`moltbot bench`, with its HTML report and html/template). urfave/cli's
// man page and markdown generators are out of every build made by make
// (urfave_cli_no_docs). Everything a node serves stays. Its size
// budget is checked beside the default build's (bench/measure's
// TestSizeBudget, make size-check).
//
// The engine worth leaving out, the cluster (memberlist, gRPC, protobuf and
// protoactor's remote: about 4 MB of the binary), is linked by actors
// whether or not cluster.bind is set; it can move behind this tag once
// actors' cluster link is its own package.

// benchCommand is not in the edge build.
func benchCommand() *cli.Command { return nil }

// simCommand is not in the edge build: the simulator's HTTP servers stay
// out (the in-process sim provider stays in).
func simCommand() *cli.Command { return nil }
