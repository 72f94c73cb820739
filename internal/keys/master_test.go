package keys

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestLoadMasterKeyFromEnv(t *testing.T) {
	want := bytes.Repeat([]byte{7}, 32)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		t.Setenv(MasterKeyEnv, " "+enc.EncodeToString(want)+"\n")
		dir := t.TempDir()
		got, err := LoadMasterKey(dir)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("LoadMasterKey = %x, %v", got, err)
		}
		if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); !os.IsNotExist(err) {
			t.Fatal("a master key file was written although the env var is set")
		}
	}
	for _, bad := range []struct{ value, msg string }{
		{"not base64!", "not base64"},
		{base64.StdEncoding.EncodeToString(make([]byte, 16)), "16 bytes, want 32"},
		{base64.StdEncoding.EncodeToString(make([]byte, 33)), "33 bytes, want 32"},
	} {
		t.Setenv(MasterKeyEnv, bad.value)
		_, err := LoadMasterKey(t.TempDir())
		if err == nil || !strings.Contains(err.Error(), bad.msg) || !strings.Contains(err.Error(), MasterKeyEnv) {
			t.Errorf("env %q: err = %v, want a message naming %s and saying %q", bad.value, err, MasterKeyEnv, bad.msg)
		}
	}
}

func TestLoadMasterKeyFile(t *testing.T) {
	t.Setenv(MasterKeyEnv, "")
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := LoadMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 || bytes.Equal(k1, make([]byte, 32)) {
		t.Fatalf("generated key %x", k1)
	}
	path := filepath.Join(dir, MasterKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key mode %04o, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if string(data) != base64.StdEncoding.EncodeToString(k1)+"\n" {
		t.Fatalf("master.key holds %q, want the base64 line of the key", data)
	}
	k2, err := LoadMasterKey(dir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second start: %x, %v; want the same key", k2, err)
	}
	// The same text works as POSGATE_MASTER_KEY for a second replica.
	t.Setenv(MasterKeyEnv, string(data))
	k3, err := LoadMasterKey(t.TempDir())
	if err != nil || !bytes.Equal(k1, k3) {
		t.Fatalf("file text as env: %x, %v", k3, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want only master.key (temporary file left behind?)", len(entries))
	}
}

func TestLoadMasterKeyFileRaw(t *testing.T) {
	t.Setenv(MasterKeyEnv, "")
	dir := t.TempDir()
	raw := bytes.Repeat([]byte{0xAB}, 32)
	if err := os.WriteFile(filepath.Join(dir, MasterKeyFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadMasterKey(dir)
	if err != nil || !bytes.Equal(k, raw) {
		t.Fatalf("raw 32-byte file: %x, %v", k, err)
	}
}

func TestLoadMasterKeyFileRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix permissions")
	}
	t.Setenv(MasterKeyEnv, "")
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "\n"
	for _, c := range []struct {
		name    string
		content string
		mode    os.FileMode
		msg     string
	}{
		{"world readable", good, 0o644, "chmod 600"},
		{"group readable", good, 0o640, "mode 0640"},
		{"group writable", good, 0o620, "group or others"},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600, "wrong size"},
		{"31 raw bytes", string(make([]byte, 31)), 0o600, "wrong size"},
		{"empty", "", 0o600, "wrong size"},
		{"garbage", strings.Repeat("x", 100), 0o600, "wrong size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, MasterKeyFile)
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, c.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadMasterKey(dir)
			if err == nil || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want a message naming %s and saying %q", err, path, c.msg)
			}
			if after, _ := os.ReadFile(path); string(after) != c.content {
				t.Fatal("a refused master key file was changed")
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, MasterKeyFile), 0o700)
		if _, err := LoadMasterKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v", err)
		}
	})
}

// Two processes starting on one fresh data directory must end up with one key.
func TestLoadMasterKeyConcurrentFirstStart(t *testing.T) {
	t.Setenv(MasterKeyEnv, "")
	dir := filepath.Join(t.TempDir(), "data")
	const n = 16
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadMasterKey(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("start %d: %x, %v; start 0: %x", i, keys[i], errs[i], keys[0])
		}
	}
}

func TestDeriveKey(t *testing.T) {
	m := bytes.Repeat([]byte{3}, 32)
	a, b := DeriveKey(m, "sealer/v1"), DeriveKey(m, "gateway/signature")
	if len(a) != 32 || bytes.Equal(a, b) || bytes.Equal(a, m) {
		t.Fatalf("derived keys not separated: %x %x", a, b)
	}
	if !bytes.Equal(a, DeriveKey(m, "sealer/v1")) {
		t.Fatal("DeriveKey is not deterministic")
	}
}

// TestFingerprint: alike for the same master key, purpose and data; different when any of them
// differs (a new admin token, another deployment, another use of the master key).
func TestFingerprint(t *testing.T) {
	m1, m2 := bytes.Repeat([]byte{1}, MasterKeySize), bytes.Repeat([]byte{2}, MasterKeySize)
	a := Fingerprint(m1, "p/v1", []byte("data"))
	if len(a) != 32 || !bytes.Equal(a, Fingerprint(m1, "p/v1", []byte("data"))) {
		t.Fatalf("not stable: %x", a)
	}
	for name, other := range map[string][]byte{
		"data":    Fingerprint(m1, "p/v1", []byte("datb")),
		"master":  Fingerprint(m2, "p/v1", []byte("data")),
		"purpose": Fingerprint(m1, "q/v1", []byte("data")),
	} {
		if bytes.Equal(a, other) {
			t.Errorf("another %s gives the same fingerprint", name)
		}
	}
	if bytes.Equal(a, DeriveKey(m1, "p/v1")) {
		t.Error("the fingerprint is the derived key")
	}
}
