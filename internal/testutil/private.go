package testutil

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

// CheckPrivate fails t for any directory under dir that is not 0700 and any
// file that others (group or world) may read or write, and returns how many
// files it checked. Files that vanish during the walk (Pebble deletes
// obsolete ones in the background) are skipped.
func CheckPrivate(t testing.TB, dir string) (files int) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
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
