package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// cluster is one or two posgate processes (`posgate serve`) started for a round trip: on SQLite
// one process; on PostgreSQL two replicas sharing the database (a private one, dropped at the
// end), the data dir (master key) and server.issuer, so a caller on one and a POS on the other
// measure the cross-replica path.
type cluster struct {
	dir      string
	adminTok string
	procs    []*exec.Cmd
	urls     []string
	dsn      string // the private database, dropped in stop
	adminDSN string
	dbName   string
	client   *http.Client
	cpu0     []time.Duration // CPU time of each process when the load began
	calls    atomic.Int64    // requests sent, for CPU per request
	perf     bool            // count system calls with perf stat (-args perf=1)
	keep     bool            // keep the data dir and the logs (-args keep=1)
	perfs    []*perfStat
	pg0      *pgCounts
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startCluster builds (unless Args["bin"] names a binary) and starts posgate. replicas is 1 for
// SQLite; for PostgreSQL 2 unless Args["replicas"]="1".
func startCluster(ctx context.Context, o RoundTripOptions) (*cluster, error) {
	c := &cluster{adminTok: "pg_at_" + randHex(24), client: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}}}
	var err error
	if c.dir, err = os.MkdirTemp("", "benchhub-posgate-"); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	c.perf, c.keep = o.Args["perf"] == "1", o.Args["keep"] == "1"
	bin := o.Args["bin"]
	if bin == "" {
		bin = filepath.Join(c.dir, "posgate")
		b := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/posgate")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/posgate (run from the repository root, or pass -args bin=…): %w", err)
		}
	}
	env := append(os.Environ(), "POSGATE_ADMIN_TOKEN="+c.adminTok)
	replicas := 1
	switch o.Store {
	case "sqlite", "":
	case "postgres":
		replicas = 2
		if o.Args["replicas"] == "1" {
			replicas = 1
		}
		c.adminDSN = o.DSN
		if c.adminDSN == "" {
			c.adminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
		}
		c.dbName = "benchhub_" + randHex(6)
		if err := c.pgExec(ctx, "CREATE DATABASE "+c.dbName); err != nil {
			c.dbName = ""
			return nil, err
		}
		u, err := url.Parse(c.adminDSN)
		if err != nil {
			return nil, err
		}
		u.Path = "/" + c.dbName
		c.dsn = u.String()
		env = append(env, "POSGATE_STORE_DRIVER=postgres", "POSGATE_STORE_DSN="+c.dsn)
	default:
		return nil, fmt.Errorf("-store %q: sqlite or postgres", o.Store)
	}
	dataDir := filepath.Join(c.dir, "data")
	ports := make([]string, replicas)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = l.Addr().String()
		l.Close()
	}
	// Replicas share the issuer: a token minted on one verifies on the other.
	env = append(env, "POSGATE_SERVER_ISSUER=http://"+ports[0])
	for i, addr := range ports {
		cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--http-addr", addr)
		cmd.Env = env
		logf, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("posgate-%d.log", i)))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c.procs = append(c.procs, cmd)
		c.urls = append(c.urls, "http://"+addr)
		// The first replica creates the master key and runs the migrations; the second starts
		// once it is ready.
		if err := c.waitReady(ctx, c.urls[i]); err != nil {
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("posgate %d: %w\n%s", i, err, tail(b, 2000))
		}
	}
	for i, p := range c.procs {
		fmt.Fprintf(os.Stderr, "posgate %d: pid %d at %s (%s)\n", i, p.Process.Pid, c.urls[i], storeName(o.Store))
	}
	ok = true
	return c, nil
}

func storeName(s string) string {
	if s == "" {
		return "sqlite"
	}
	return s
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (c *cluster) pgExec(ctx context.Context, sql string) error { return pgAdmin(ctx, c.adminDSN, sql) }

func (c *cluster) waitReady(ctx context.Context, base string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		res, err := c.client.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // polls a state, the server's readiness
		}
	}
	return errors.New("not ready within 60 s")
}

// url is the base URL of replica i (the last one when there are fewer).
func (c *cluster) url(i int) string { return c.urls[min(i, len(c.urls)-1)] }

// loadStarts records each process's CPU time, so stop can report CPU per request: where the
// time goes when the round trip does not keep the pace.
func (c *cluster) loadStarts() {
	c.cpu0 = c.cpu0[:0]
	for _, p := range c.procs {
		t, _ := procCPU(p.Process.Pid)
		c.cpu0 = append(c.cpu0, t)
	}
	c.startCounters()
}

func (c *cluster) stop() {
	if n := c.calls.Load(); n > 0 && len(c.cpu0) == len(c.procs) {
		for i, p := range c.procs {
			if t, err := procCPU(p.Process.Pid); err == nil {
				used := t - c.cpu0[i]
				fmt.Fprintf(os.Stderr, "posgate %d: %.2f s CPU for %d requests (warm-up included): %.0f µs per request\n",
					i, used.Seconds(), n, float64(used.Microseconds())/float64(n))
			}
		}
		c.reportCounters(n)
	}
	for _, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range c.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	c.procs = nil
	if c.dbName != "" {
		if err := c.pgExec(context.Background(), "DROP DATABASE IF EXISTS "+c.dbName+" WITH (FORCE)"); err != nil {
			fmt.Fprintln(os.Stderr, "drop database:", err)
		}
		c.dbName = ""
	}
	if c.dir != "" && c.keep {
		fmt.Fprintf(os.Stderr, "kept %s (posgate-N.log are the servers' logs)\n", c.dir)
	} else if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// admin calls the admin API of replica 0; want is the expected status.
func (c *cluster) admin(ctx context.Context, method, path string, body any, want int) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, c.urls[0]+"/admin/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.adminTok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.decode(req, want)
}

func (c *cluster) decode(req *http.Request, want int) (map[string]any, error) {
	res, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, res.StatusCode, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m, nil
}

// accessToken creates an OAuth client with scope and audience and returns a client_credentials
// access token for it.
func (c *cluster) accessToken(ctx context.Context, scope, audience string) (string, error) {
	cl, err := c.admin(ctx, "POST", "/clients", map[string]any{"name": "bench", "grant_types": []string{"client_credentials"},
		"scopes": []string{scope}, "audiences": []string{audience}}, http.StatusCreated)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {audience}, "scope": {scope}}
	req, _ := http.NewRequestWithContext(ctx, "POST", c.urls[0]+"/oauth/token", strings.NewReader(form.Encode()))
	id, _ := cl["client_id"].(string)
	sec, _ := cl["client_secret"].(string)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tr, err := c.decode(req, http.StatusOK)
	if err != nil {
		return "", err
	}
	tok, _ := tr["access_token"].(string)
	if tok == "" {
		return "", errors.New("no access_token")
	}
	return tok, nil
}

// post sends body to path on replica i with the bearer token and returns status and body.
func (c *cluster) post(ctx context.Context, i int, path, tok string, body []byte) (int, []byte, error) {
	c.calls.Add(1)
	req, _ := http.NewRequestWithContext(ctx, "POST", c.url(i)+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b, err
}
