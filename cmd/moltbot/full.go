//go:build !edge

package main

import "github.com/moltbot/moltbot/configs"

// The default build's side of edge.go: every command, and the cluster.

// edgeBuild: this is not the edge build.
const edgeBuild = false

// clusterRefused refuses nothing: this build has the cluster engine.
func clusterRefused(*configs.Config) error { return nil }
