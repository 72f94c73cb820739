package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

// `posgate serve --demo` on the default HTTPS listener, twice on one data directory: each time
// every line it prints runs, in order, as one bash script (curl against the real server, nothing
// added but `set -euo pipefail`), every call answers, and the second start re-issues the demo
// credentials instead of adding a second set.
func TestServeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, tool := range []string{"bash", "curl", "jq", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required under CI=true", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	bin := buildBinary(t)
	work := t.TempDir()
	addr := freeAddr(t)

	var clientIDs []string
	for run := 1; run <= 2; run++ {
		script, stop := startDemo(t, bin, work, addr)
		if !strings.Contains(script, "export CURL_CA_BUNDLE="+filepath.Join(work, "posgate-data", "tls-cert.pem")+"\n") {
			t.Fatalf("run %d: the demo does not trust the self-signed certificate first:\n%s", run, script)
		}
		cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+script)
		cmd.Dir = work
		cmd.Env = cleanEnv()
		for i, kv := range cmd.Env {
			if strings.HasPrefix(kv, "CURL_CA_BUNDLE=") || strings.HasPrefix(kv, "SSL_CERT_") {
				cmd.Env[i] = "IGNORED_" + kv
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: the demo lines failed: %v\nscript:\n%s\noutput:\n%s", run, err, script, out)
		}
		bar := `"name":"Demo Bar"`
		if run == 2 {
			bar = `"name":"Demo Bar 2"` // the first run's onboarding line took "Demo Bar"
		}
		for _, want := range []string{
			`{"active":true,"scope":"read"`,    // oauth introspection
			`"scope":"offline_access rentals"`, // chimpy sign-in and refresh
			`"refresh_token":"pg_rt_`,          //
			`"token_type":"Bearer"`,            // jackpot m2m and session
			bar,                                // doshii onboarding
			`{"id":"dl_demo",`,                 // doshii venue call
			`"upstream":"posgate example upstream","method":"Reports.list","caller":{"dialect":"chef"`,                       // chef data call
			`{"upstream":"posgate example upstream","method":"GET","target":"/example/orders","caller":{"dialect":"posgate"`, // gateway
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("run %d: the demo output lacks %s:\n%s", run, want, out)
			}
		}
		if n := strings.Count(string(out), `"token_type":"Bearer"`); n < 3 {
			t.Errorf("run %d: %d token answers, want at least 3 (chimpy, jackpot m2m, jackpot session):\n%s", run, n, out)
		}
		ids := demoClients(t, work, addr)
		if run == 1 {
			clientIDs = ids
		} else if strings.Join(ids, ",") != strings.Join(clientIDs, ",") {
			t.Errorf("the second --demo changed the demo clients: %v, then %v", clientIDs, ids)
		}
		stop()
	}
}

// startDemo runs `posgate serve --demo` in dir and returns the lines it printed between its demo
// banner and "serving on", and a function that stops it (called at the latest when the test ends).
func startDemo(t *testing.T, bin, dir, addr string) (string, func()) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--demo", "--addr", addr)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var printed strings.Builder
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		done <- cmd.Wait()
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			go func() {
				for range lines {
				}
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
	}
	var script strings.Builder
	in := false
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("posgate exited before serving:\n%s\n%s", printed.String(), stderr.String())
			}
			printed.WriteString(l + "\n")
			switch {
			case strings.HasPrefix(l, "posgate demo credentials"):
				in = true
			case strings.HasPrefix(l, "posgate: serving on"):
				t.Cleanup(stop)
				return script.String(), stop
			case in:
				script.WriteString(l + "\n")
			}
		case <-timeout:
			stop()
			t.Fatalf("posgate did not start:\n%s\n%s", printed.String(), stderr.String())
		}
	}
}

// demoClients returns the internal ids of the clients named like the demo's, in order.
func demoClients(t *testing.T, dir, addr string) []string {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, "posgate-data", "tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	token, err := os.ReadFile(filepath.Join(dir, "posgate-data", "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, _ := http.NewRequest("GET", "https://"+addr+"/admin/api/v1/clients", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var list struct {
		Clients []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list clients: %d %s", resp.StatusCode, body)
	}
	var ids []string
	for _, cl := range list.Clients {
		if strings.Contains(cl.Name, "demo") {
			ids = append(ids, cl.Name+"="+cl.ID)
		}
	}
	if len(ids) != 3 {
		t.Errorf("demo clients %v, want one each of posgate-demo, chimpy-demo, jackpot-demo", ids)
	}
	return ids
}
