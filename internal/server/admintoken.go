package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/posgate/posgate/internal/secret"
)

// AdminTokenFile is where a generated admin token is kept (mode 0600) in the data dir.
const AdminTokenFile = "admin-token"

// minAdminToken is the shortest POSGATE_ADMIN_TOKEN accepted: a guessable admin token would be the
// weakest credential of the deployment.
const minAdminToken = 32

// adminToken is the admin token as the server keeps it: only its SHA-256, compared in constant time.
type adminToken struct {
	hash []byte
}

func (a *adminToken) Check(tok string) bool {
	if a == nil || len(a.hash) == 0 || tok == "" {
		return false
	}
	return secret.Equal(secret.Hash(tok), a.hash)
}

// loadAdminToken returns the admin token: fromEnv when set, else the one in <dataDir>/admin-token,
// generated there on first start. path is the file it came from ("" for the environment) and
// created says it was generated now (so the caller tells the operator where to find it, once).
func loadAdminToken(dataDir, fromEnv string) (tok *adminToken, path string, created bool, err error) {
	if fromEnv != "" {
		if len(fromEnv) < minAdminToken {
			return nil, "", false, fmt.Errorf("POSGATE_ADMIN_TOKEN: too short (%d characters; at least %d, e.g. a generated pg_at_… token)", len(fromEnv), minAdminToken)
		}
		return &adminToken{hash: secret.Hash(fromEnv)}, "", false, nil
	}
	path = filepath.Join(dataDir, AdminTokenFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		info, serr := os.Stat(path)
		if serr == nil && info.Mode().Perm()&0o077 != 0 {
			return nil, "", false, fmt.Errorf("%s: permissions %v are too open (want 0600)", path, info.Mode().Perm())
		}
		t := strings.TrimSpace(string(data))
		if len(t) < minAdminToken {
			return nil, "", false, fmt.Errorf("%s: token too short", path)
		}
		return &adminToken{hash: secret.Hash(t)}, path, false, nil
	case errors.Is(err, os.ErrNotExist):
		t := secret.Generate(secret.PrefixAdminToken)
		if werr := writeExclusive(path, []byte(t+"\n"), 0o600); werr != nil {
			if errors.Is(werr, os.ErrExist) { // another process created it first: use theirs
				return loadAdminToken(dataDir, "")
			}
			return nil, "", false, fmt.Errorf("admin token: %w", werr)
		}
		return &adminToken{hash: secret.Hash(t)}, path, true, nil
	default:
		return nil, "", false, fmt.Errorf("admin token: %w", err)
	}
}
