package tokensource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/oauth2"
)

// FileStore keeps one token in a file readable by its owner only (mode 0600). Save replaces the
// file atomically (a temporary file in the same directory, synced, then renamed), so a crash
// leaves the old token or the new one, never a torn file. Its Save method fits the persistence
// hooks of the chimpy and chef clients.
type FileStore struct {
	Path string
}

// Load returns the saved token, or nil and no error when there is none yet. A file that other
// users may read or write is refused: it holds a credential.
func (f FileStore) Load() (*oauth2.Token, error) {
	fh, err := os.Open(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token file %s: mode %v lets other users read it; chmod 600 it", f.Path, st.Mode().Perm())
	}
	var tok oauth2.Token
	if err := json.NewDecoder(fh).Decode(&tok); err != nil {
		return nil, fmt.Errorf("token file %s: %w", f.Path, err)
	}
	return &tok, nil
}

// Save writes tok, replacing the file atomically.
func (f FileStore) Save(_ context.Context, tok *oauth2.Token) error {
	data, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".*") // created 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil { // make the rename itself durable
		d.Sync()
		d.Close()
	}
	return nil
}
