package orderpay_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store/pgtest"
)

// buildPosgate builds the posgate binary into a temporary directory.
func buildPosgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "posgate")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/posgate/posgate/cmd/posgate").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// child is a `posgate serve` subprocess on plain HTTP.
type child struct {
	cmd  *exec.Cmd
	inst *servertest.Instance // URL, admin token and client, for the helpers
	log  *os.File
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startChild runs `posgate serve` on dataDir with env, and waits until /readyz answers 200.
func startChild(t *testing.T, bin, dataDir, adminToken string, env ...string) *child {
	t.Helper()
	addr := freeAddr(t)
	lf, err := os.CreateTemp(t.TempDir(), "posgate-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--http-addr", addr)
	cmd.Env = append(os.Environ(), append(env, "POSGATE_ADMIN_TOKEN="+adminToken)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, log: lf, inst: &servertest.Instance{URL: "http://" + addr, AdminToken: adminToken,
		Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}}}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			_ = c.cmd.Wait()
		}
		if t.Failed() {
			data, _ := os.ReadFile(lf.Name())
			t.Logf("posgate serve output (tail):\n%s", tailString(string(data), 4000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.inst.Client.Get(c.inst.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("posgate serve did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
	c.inst.Client.Transport.(*http.Transport).CloseIdleConnections()
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestKill9LosesNothingAccepted: requests answered 202 — some written to the POS and awaiting
// its answer, some still queued — survive a SIGKILL of the posgate holding them. On SQLite the
// same data directory is served again; on PostgreSQL the other replica takes over. Every request
// reaches the POS, in order, under its RequestID, once the POS reconnects. Requests written to
// the dead process's socket wait for their delivery lease to run out: the victim runs with
// hub.lease 12 s, so they come back after it, not after the default minute.
// leaseEnv shortens the victim's delivery lease (hub.lease).
const leaseEnv = "POSGATE_HUB_LEASE=12"

func TestKill9LosesNothingAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test: builds and kills posgate processes")
	}
	bin := buildPosgate(t)
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			tok := "pg_at_" + strings.Repeat("k", 43)
			var victim *child
			var survivor func() *servertest.Instance
			if driver == "sqlite" {
				dir := t.TempDir()
				victim = startChild(t, bin, dir, tok, leaseEnv)
				survivor = func() *servertest.Instance { return startChild(t, bin, dir, tok).inst }
			} else {
				dsn := pgtest.NewDatabase(t)
				a := servertest.Start(t, servertest.Options{DSN: dsn, AdminToken: tok})
				victim = startChild(t, bin, a.DataDir, tok, leaseEnv, "POSGATE_STORE_DRIVER=postgres", "POSGATE_STORE_DSN="+dsn,
					"POSGATE_SERVER_ISSUER="+a.Config.Server.Issuer) // replicas of one deployment share the issuer
				survivor = func() *servertest.Instance { return a }
			}
			v := victim.inst
			o := createOutlet(t, v, "outlet-1")
			s := newSender(t, v)
			p := dial(t, v, o)
			var ids []string
			for i := range 3 { // in flight: written to the POS, not answered
				id := "inflight-" + strconv.Itoa(i)
				if st, _, body := s.send(t, o.ProviderOutletID, "0", fmt.Sprintf(`{"MessageType":1,"Payload":{"n":%d},"RequestID":%q}`, i, id)); st != 202 {
					t.Fatalf("send: %d %s", st, body)
				}
				if f, _ := p.read(); f.RequestID != id {
					t.Fatalf("POS got %q, want %q", f.RequestID, id)
				}
				ids = append(ids, id)
			}
			eventually(t, "in-flight requests marked sent", func() bool {
				_, g := s.get(t, o.ProviderOutletID, ids[2])
				return g["State"] == "sent"
			})
			// Queued: the POS stops reading, so these are accepted while it cannot take them.
			p.ws.CloseNow()
			eventually(t, "POS gone", func() bool {
				_, g := v.Admin(t, "GET", "/orderpay/outlets/"+o.ID, nil)
				return g["online"] == false
			})
			p = dial(t, v, o)
			// The redelivery of the in-flight three is on this new socket now; take them, do not
			// answer, and add three queued ones while the POS does not read.
			for range 3 {
				p.read()
			}
			for i := range 3 {
				id := "queued-" + strconv.Itoa(i)
				if st, _, body := s.send(t, o.ProviderOutletID, "0", fmt.Sprintf(`{"MessageType":12,"Payload":{"n":%d},"RequestID":%q}`, i, id)); st != 202 {
					t.Fatalf("send: %d %s", st, body)
				}
				ids = append(ids, id)
			}
			victim.kill9(t)
			p.ws.CloseNow()

			w := survivor()
			// A token of the survivor: each process here has its own issuer URL (its own port);
			// replicas behind one load balancer share server.issuer instead.
			ws := newSender(t, w)
			q := dial(t, w, o)
			seen := map[string]bool{}
			var order []string
			for len(seen) < len(ids) {
				f, _ := q.readWithin(45 * time.Second) // the dead process's lease runs out first
				if !seen[f.RequestID] {
					seen[f.RequestID] = true
					order = append(order, f.RequestID)
				}
				q.answer(f, 0)
			}
			if strings.Join(order, ",") != strings.Join(ids, ",") {
				t.Fatalf("delivered %v, want %v", order, ids)
			}
			for _, id := range ids {
				eventually(t, id+" answered", func() bool {
					_, g := ws.get(t, o.ProviderOutletID, id)
					return g["State"] == "answered"
				})
			}
		})
	}
}
