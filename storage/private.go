package storage

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/vfs"
)

// The data directory holds every conversation and the token signing keys:
// it is 0700 and its files 0600, whatever the process umask. Pebble creates
// files through its vfs.FS with mode 0666 (less the umask) and directories
// with 0755; privateFS makes them private as they are made. Changing the
// umask instead would affect every file the process makes, and races with
// other goroutines.

const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600
)

// privateFS is vfs.Default with private modes: new files are chmod 0600
// before Pebble writes a byte to them, directories are made 0700.
type privateFS struct{ vfs.FS }

func (p privateFS) Create(name string) (vfs.File, error) {
	f, err := p.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return f, private(f, name)
}

func (p privateFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, opts...)
	if err != nil {
		return nil, err
	}
	return f, private(f, name)
}

func (p privateFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname)
	if err != nil {
		return nil, err
	}
	return f, private(f, newname)
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return p.FS.MkdirAll(dir, dirMode)
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	// The lock file is made here first, so that it is never 0644.
	if f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, fileMode); err == nil {
		f.Close()
	}
	if err := os.Chmod(name, fileMode); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return p.FS.Lock(name)
}

// private sets a just-opened file's mode to 0600; on failure it closes f.
func private(f vfs.File, name string) error {
	if err := os.Chmod(name, fileMode); err != nil {
		f.Close()
		return err
	}
	return nil
}

// Tighten makes dir and everything under it private: directories 0700,
// files 0600 (only permissions that are wider change). It returns the paths
// it changed, for the caller to log. Symbolic links are left alone.
func Tighten(dir string) ([]string, error) {
	var changed []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		want := fileMode
		if d.IsDir() {
			want = dirMode
		}
		if perm := info.Mode().Perm(); perm&^want != 0 {
			switch err := os.Chmod(path, perm&want); {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return err
			default:
				changed = append(changed, path)
			}
		}
		return nil
	})
	return changed, err
}
