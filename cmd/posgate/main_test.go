package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

// buildBinary builds posgate into a temporary directory (once per test binary).
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "posgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "posgate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cleanEnv is the process environment without POSGATE_ settings (so a developer's environment
// cannot change what the test runs), plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POSGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

type proc struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan error
}

func startServe(t *testing.T, bin, dataDir, addr, adminToken string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--http-addr", addr)
	cmd.Env = cleanEnv("POSGATE_ADMIN_TOKEN=" + adminToken)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("posgate output:\n%s", tailLines(out.String(), 40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("posgate exited early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("posgate did not become healthy\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func adminReq(method, url, token string, body []byte) (int, map[string]any, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	return resp.StatusCode, m, nil
}

// kill -9 of `posgate serve` during a stream of admin writes: after a restart the SQLite file
// passes PRAGMA integrity_check and every write that was answered 2xx is there.
func TestKill9DuringAdminWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dataDir := t.TempDir()
	addr := freeAddr(t)
	token := "pg_at_kill9-test-token-0123456789abcdefghijkl"
	p := startServe(t, bin, dataDir, addr, token)

	var (
		mu    sync.Mutex
		acked []string
		n     atomic.Int64
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				body := fmt.Sprintf(`{"name":"kill9 w%d n%d","grant_types":["client_credentials"],"scopes":["s"]}`, w, i)
				status, m, err := adminReq("POST", "http://"+addr+"/admin/api/v1/clients", token, []byte(body))
				if err != nil {
					return // the process is gone
				}
				if status/100 == 2 {
					mu.Lock()
					acked = append(acked, m["id"].(string))
					mu.Unlock()
					n.Add(1)
				}
			}
		}(w)
	}
	// Let the stream run, then kill -9 in the middle of it.
	deadline := time.Now().Add(30 * time.Second)
	for n.Load() < 150 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-p.done
	p.done <- err
	stop.Store(true)
	wg.Wait()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("process did not die of SIGKILL: %v", err)
	}

	// The SQLite file is intact.
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "posgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check = %q, %v", res, err)
	}
	db.Close()

	// Restart: every acknowledged client is there.
	p2 := startServe(t, bin, dataDir, addr, token)
	for _, id := range acked {
		status, m, err := adminReq("GET", "http://"+addr+"/admin/api/v1/clients/"+id, token, nil)
		if err != nil || status != 200 || m["id"] != id {
			t.Fatalf("acknowledged client %s after restart: %d %v %v", id, status, m, err)
		}
	}
	t.Logf("%d acknowledged writes before kill -9, all present after restart", len(acked))

	// SIGTERM: graceful exit 0.
	p2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p2.done:
		p2.done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, tailLines(p2.out.String(), 20))
		}
	case <-time.After(30 * time.Second):
		t.Error("no exit 30 s after SIGTERM")
	}
}

// A bad configuration fails at start with a message naming the key, the value and what is allowed.
func TestBadConfigFailsAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "posgate.yaml")
	os.WriteFile(cfgFile, []byte("chef:\n  leeway: 500\nstore:\n  drivr: sqlite\n"), 0o600)
	for _, tc := range []struct {
		args []string
		env  []string
		want []string
	}{
		// Every error of the file at once, each with its line.
		{[]string{"--config", cfgFile}, nil, []string{`line 2: chef.leeway: 500 is out of range (0–120 seconds)`, `line 4: store.drivr: unknown key "drivr"`}},
		{nil, []string{"POSGATE_CHEF_LEEWAY=500"}, []string{"chef.leeway: 500 is out of range (0–120 seconds)"}},
		{nil, []string{"POSGATE_STORE_DRIVER=mysql"}, []string{`store.driver: "mysql" is not allowed (sqlite or postgres)`}},
		{nil, []string{"POSGATE_CHEF_LEEWAYY=5"}, []string{"POSGATE_CHEF_LEEWAYY: not a posgate setting"}},
	} {
		cmd := exec.Command(bin, append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0"}, tc.args...)...)
		cmd.Env = cleanEnv(tc.env...)
		out, err := cmd.CombinedOutput()
		for _, want := range tc.want {
			if err == nil || !strings.Contains(string(out), want) {
				t.Errorf("%v %v: err %v, output:\n%s\nwant %q", tc.args, tc.env, err, out, want)
			}
		}
	}
}
