package retention

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/moltbot/moltbot"
)

// archive appends what a policy deletes or trims, before it goes, as one
// JSON line per conversation to <dir>/<tenant>/<YYYY-MM-DD>.jsonl (UTC
// date of the sweep). Directories are 0700 and files 0600 (tightened if
// wider), and each line is synced before the conversation is touched: a
// conversation is deleted only once its archive is on disk. A line whose
// delete or trim was then skipped (the conversation changed) may be
// written again by a later sweep; its version tells them apart.
type archive struct{ dir string }

// Record is one line of an archive.
type Record struct {
	// Archived is when, in RFC 3339 (UTC).
	Archived string `json:"archived"`
	// Reason: "idle" (the whole conversation, deleted after retention.days)
	// or "trimmed" (the messages trimmed away, oldest first, beyond
	// retention.messages; the conversation's other fields as they were).
	Reason string `json:"reason"`
	Tenant string `json:"tenant"`
	// Conversation, with its space as "tenant" and its version.
	Conversation *moltbot.Conversation `json:"conversation"`
}

func (a *archive) append(tenant string, now time.Time, reason string, c *moltbot.Conversation) error {
	if a.dir == "" {
		return errors.New("retention: no archive directory")
	}
	if !moltbot.ValidTenantID(tenant) {
		return fmt.Errorf("retention: tenant id %q", tenant)
	}
	dir := filepath.Join(a.dir, tenant)
	for _, d := range []string{a.dir, dir} {
		if err := privateDir(d); err != nil {
			return err
		}
	}
	line, err := json.Marshal(&Record{Archived: now.UTC().Format(time.RFC3339), Reason: reason, Tenant: tenant, Conversation: c})
	if err != nil {
		return err
	}
	path := filepath.Join(dir, now.UTC().Format("2006-01-02")+".jsonl")
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("retention: archive: %w", err)
	}
	if err := tighten(f, path); err != nil {
		f.Close()
		return err
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && errors.Is(statErr, os.ErrNotExist) {
		err = syncDir(dir) // the new file's name is durable too
	}
	if err != nil {
		return fmt.Errorf("retention: archive %s: %w", path, err)
	}
	return nil
}

// privateDir makes dir (0700), or tightens it to 0700.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("retention: archive: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("retention: archive: %w", err)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("retention: archive: %w", err)
		}
	}
	return nil
}

// tighten makes an archive file 0600 if it is wider.
func tighten(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("retention: archive %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("retention: archive %s: %w", path, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
