//go:build unix

package storage

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/testutil"
)

// Issue #10, finding 10: the data directory (conversations, token signing
// keys) is 0700 and every file Pebble makes is 0600, under the usual umask
// 022 (which made them 0644 before); an old, open directory is tightened at
// open and the log says so.
func TestDataDirIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022) // the common default, whatever the test runner has
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	for round := 0; round < 2; round++ { // a fresh directory, then a reopened one (new WAL, manifest, options)
		p, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			p.Put(&moltbot.Conversation{Tenant: "t", ID: strings.Repeat("c", i+1), System: strings.Repeat("x", 4096)}, true)
		}
		p.Namespace(AuthSigning).Put("k1", []byte("private key"))
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := testutil.CheckPrivate(t, dir); n < 4 {
			t.Fatalf("round %d: only %d files checked", round, n)
		}
		p.Close()
	}
	// An existing directory left open (by an older build): tightened at open.
	os.Chmod(dir, 0o755)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.Chmod(filepath.Join(dir, e.Name()), 0o644)
	}
	var logs bytes.Buffer
	p, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	testutil.CheckPrivate(t, dir)
	if !strings.Contains(logs.String(), "made it private") || !strings.Contains(logs.String(), "changed=") {
		t.Fatalf("the tightening is not logged: %s", logs.String())
	}
}
