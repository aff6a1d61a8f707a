package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

// readmeBlock returns the first ```sh block after the heading.
func readmeBlock(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	end := strings.Index(s[start+6:], "```")
	var lines []string
	for _, l := range strings.Split(s[start+6:start+6+end], "\n") {
		if j := strings.Index(l, "#"); j >= 0 {
			l = l[:j]
		}
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// freeTwin is a free port whose successor is free too (a gossip port and
// its default RPC port).
func freeTwin(t *testing.T) int {
	for i := 0; i < 50; i++ {
		p := testutil.FreePort(t)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free ports")
	return 0
}

// README's cluster example, run as written (with free ports in place of
// its numbers): a CA, a certificate per node, three nodes that verify each
// other over mutual TLS with encrypted gossip.
func TestClusterREADMEExample(t *testing.T) {
	lines := readmeBlock(t, "## Cluster")
	dir := t.TempDir()
	ports := map[string]string{}
	portRE := regexp.MustCompile(`\b(3\d{3}|79\d{2})\b`)
	for _, l := range lines {
		for _, p := range portRE.FindAllString(l, -1) {
			if _, ok := ports[p]; !ok {
				n := freeTwin(t)
				if strings.HasPrefix(p, "3") {
					n = testutil.FreePort(t)
				}
				ports[p] = strconv.Itoa(n)
			}
		}
	}
	forRE := regexp.MustCompile(`^for (\w+) in ([^;]+); do (.+); done$`)
	var cmds [][]string
	for _, l := range lines {
		l = portRE.ReplaceAllStringFunc(l, func(p string) string { return ports[p] })
		if m := forRE.FindStringSubmatch(l); m != nil {
			for _, v := range strings.Fields(m[2]) {
				cmds = append(cmds, strings.Fields(strings.ReplaceAll(m[3], "$"+m[1], v)))
			}
			continue
		}
		cmds = append(cmds, strings.Fields(l))
	}
	var urls []string
	for _, c := range cmds {
		if c[0] != "moltbot" {
			t.Fatalf("README's cluster block runs %q: only moltbot commands are expected", strings.Join(c, " "))
		}
		switch {
		case len(c) > 1 && c[1] == "start":
			startProcIn(t, dir, c...)
			for i, a := range c {
				if a == "--port" {
					urls = append(urls, "http://127.0.0.1:"+c[i+1])
				}
			}
		case len(c) > 2 && c[1] == "cluster" && c[2] == "members":
			for _, u := range urls {
				waitReady(t, u)
			}
			testutil.Eventually(t, 20*time.Second, "three verified members", func() bool {
				out, err := runIn(dir, c...)
				return err == nil && strings.Count(out, " alive ") == 3 && strings.Count(out, " true ") == 3 &&
					strings.Contains(out, "n1") && strings.Contains(out, "n3")
			})
		default:
			if out, err := runIn(dir, c...); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
			}
		}
	}
	if len(urls) != 3 {
		t.Fatalf("the README starts %d nodes", len(urls))
	}
	// Secure as written: encrypted gossip, mutual TLS, no warning.
	for i := 1; i <= 3; i++ {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("n%d", i), "cluster", "node.crt")); err != nil {
			t.Fatal(err)
		}
	}
	code, body := post(t, urls[0]+"/v1/conversations", `{}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
}

// runIn runs a moltbot command line in dir (the test binary stands in).
func runIn(dir string, args ...string) (string, error) {
	cmd := exec.Command(os.Args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MOLTBOT_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
