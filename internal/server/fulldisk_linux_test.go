package server_test

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// mountSmallDisk mounts a tmpfs of size bytes on a fresh directory, a disk the test can fill for
// real. Without root it is skipped, except under CI=true, where it must run.
func mountSmallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)+",mode=0700"); err != nil {
		if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
			t.Skipf("mounting a small tmpfs needs root: %v", err)
		}
		t.Fatalf("mount a %d-byte tmpfs on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into dir until the disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	for len(chunk) > 1 { // the last partial blocks
		chunk = chunk[:len(chunk)/2]
		_, _ = f.Write(chunk)
	}
	return path
}

// TestFullDisk runs posgate on SQLite on a small disk and fills it for real: writes fail with
// 503, /readyz reports failing writes, failed client secrets are still throttled (counted in
// memory), their audit events are logged whole without the secret, and once space is freed
// writes work again, readiness returns and the WAL is truncated — no restart.
func TestFullDisk(t *testing.T) {
	mnt := mountSmallDisk(t, 8<<20)
	clk := clock.NewFake(time.Now().UTC())
	inst := servertest.Start(t, servertest.Options{Clock: clk, Configure: func(c *config.Config) {
		c.Store.Path = filepath.Join(mnt, "posgate.db")
		c.Throttle.PerAddress, c.Throttle.PerAddressIdent = 1000, 3
	}})
	status, cl := inst.Admin(t, "POST", "/clients", map[string]any{"name": "pos", "grant_types": []string{"client_credentials"}, "scopes": []string{"s"}})
	if status != 201 {
		t.Fatalf("create client: %d %v", status, cl)
	}
	id := cl["client_id"].(string)
	const wrongSecret = "pg_cs_wrongwrongwrongwrongwrongwrongwrong00"
	tokenReq := func(secret string) int {
		req, _ := http.NewRequest("POST", inst.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=s"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	readyz := func() (int, string) {
		clk.Advance(10 * time.Second) // past the write probe's period
		s, _, body := get(t, inst.Client, inst.URL+"/readyz")
		return s, body
	}
	if s, body := readyz(); s != 200 {
		t.Fatalf("readyz before: %d %s", s, body)
	}

	filler := fill(t, mnt)
	full := false
	for i := range 2000 { // writes may still fit in space SQLite already holds
		s, _ := inst.Admin(t, "POST", "/clients", map[string]any{"name": "fill-" + strconv.Itoa(i), "grant_types": []string{"client_credentials"}})
		if s == 503 {
			full = true
			break
		}
		if s != 201 {
			t.Fatalf("admin write %d on a filling disk: %d", i, s)
		}
	}
	if !full {
		t.Fatal("admin writes never failed on a full disk")
	}
	if s, body := readyz(); s != 503 || !strings.Contains(body, "writes_failing") {
		t.Errorf("readyz while writes fail: %d %s, want 503 writes_failing", s, body)
	}
	for i := range 3 {
		if s := tokenReq(wrongSecret); s != 401 {
			t.Fatalf("wrong secret %d on a full disk: %d, want 401", i, s)
		}
	}
	if s := tokenReq(wrongSecret); s != 429 {
		t.Errorf("wrong secret past the limit on a full disk: %d, want 429 (throttling must not fail open)", s)
	}
	logs := inst.Logs()
	if !strings.Contains(logs, `"msg":"audit event not stored"`) || !strings.Contains(logs, `"target":"`) {
		t.Error(`no "audit event not stored" log line for the failed credential checks`)
	}
	if strings.Contains(logs, wrongSecret) {
		t.Error("the wrong secret appears in the logs")
	}
	wal := filepath.Join(mnt, "posgate.db-wal")
	fi, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	walFull := fi.Size()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if s, body := readyz(); s != 200 {
		t.Fatalf("readyz after space was freed: %d %s", s, body)
	}
	fi, err = os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WAL: %d bytes while full, %d after recovery", walFull, fi.Size())
	if fi.Size() >= walFull {
		t.Errorf("WAL did not shrink after recovery: %d bytes, was %d", fi.Size(), walFull)
	}
	if s, res := inst.Admin(t, "POST", "/clients", map[string]any{"name": "after", "grant_types": []string{"client_credentials"}}); s != 201 {
		t.Errorf("admin write after space was freed: %d %v", s, res)
	}
}
