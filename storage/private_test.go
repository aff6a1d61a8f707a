//go:build unix

package storage

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moltbot/moltbot"
)

// checkPrivate fails t for any directory under dir that is not 0700 and any
// file that others (group or world) may read or write.
func checkPrivate(t *testing.T, dir string) (files int) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // Pebble deletes obsolete files in the background
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		perm := info.Mode().Perm()
		switch {
		case d.IsDir() && perm != 0o700:
			t.Errorf("directory %s is %v, want 0700", path, perm)
		case !d.IsDir() && perm&0o077 != 0:
			t.Errorf("file %s is %v, want 0600", path, perm)
		case !d.IsDir():
			files++
		}
		return nil
	})
	return files
}

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
		p.PutRaw("signing/k1", []byte("private key"), true)
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := checkPrivate(t, dir); n < 4 {
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
	checkPrivate(t, dir)
	if !strings.Contains(logs.String(), "made it private") || !strings.Contains(logs.String(), "changed=") {
		t.Fatalf("the tightening is not logged: %s", logs.String())
	}
}
