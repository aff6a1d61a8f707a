//go:build edge

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The edge build has no `moltbot sim` and no `moltbot bench`; its help
// does not list them.
func TestEdgeBuildCommands(t *testing.T) {
	code, out, _ := runCLI(t, "", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, cmd := range []string{"sim", "bench"} {
		if strings.Contains(out, "\n   "+cmd+" ") {
			t.Errorf("the edge build lists %q:\n%s", cmd, out)
		}
		if code, _, _ := runCLI(t, "", cmd, "--help"); code == 0 {
			t.Errorf("the edge build runs %q", cmd)
		}
	}
}

// A config that asks for a cluster is refused at start, naming the key
// and the build to use, before anything is written.
func TestEdgeBuildRefusesCluster(t *testing.T) {
	for _, tc := range []struct{ name, yaml, flag, want string }{
		{"bind", "cluster: {bind: 127.0.0.1:7946}\n", "", "cluster.bind"},
		{"bind flag", "", "--cluster-bind=127.0.0.1:7946", "cluster.bind"},
		{"bind and join", "cluster: {bind: 127.0.0.1:7946, join: [127.0.0.1:7947]}\n", "", "cluster.bind"},
		// (cluster.join alone is refused in every build: it needs cluster.bind)
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			yaml := "providers: [{name: a, type: sim}]\nmodels: {primary: a/b}\n" + tc.yaml
			os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(yaml), 0o600)
			args := []string{"start", "--workspace", ws, "--port", "0"}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			code, _, stderr := runCLI(t, "", args...)
			if code != 2 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "no cluster engine") || !strings.Contains(stderr, "default build") {
				t.Fatalf("exit %d, stderr %q; want 2, %s and no cluster engine", code, stderr, tc.want)
			}
			if _, err := os.Stat(filepath.Join(ws, "data")); err == nil {
				t.Fatal("a refused config still created the data directory")
			}
		})
	}
}
