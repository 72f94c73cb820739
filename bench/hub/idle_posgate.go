package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/internal/secret"
	_ "modernc.org/sqlite" // the seed writes posgate's database directly
)

// idlePosgate is `posgate serve` (SQLite) holding POS sockets of one dialect for the idle
// benchmark, one tenant and one credential per socket, so every socket takes the whole path:
//   - doshii: one vendor, one organisation and one location per socket, each socket opened with
//     its own location token (GET /pos/socket?token=…); the heartbeats go through the token
//     check, the hub, the heartbeat codec and the batched store write of the online deadline.
//   - orderpay: one outlet per socket and one unused single-use ticket (AccessToken) per outlet,
//     each socket opened with its ticket (GET /ws?token=…): the ticket is consumed in the store,
//     the hub registers the outlet's queue with the deliverer, and the socket idles on pings.
type idlePosgate struct {
	c       *cluster
	dialect string // "doshii" or "orderpay"
	prefix  string // the credential of socket i is idleToken(prefix, i)
}

// ticketTokens marks a token prefix whose tokens are orderpay tickets (idleToken).
const ticketTokens = "ticket:"

// idleToken is the credential of client socket i: prefix + i, or for an orderpay ticket prefix
// (ticketTokens…) a 32-byte value in unpadded base64url, as the auth endpoint issues them.
func idleToken(prefix string, i int) string {
	if seed, ok := strings.CutPrefix(prefix, ticketTokens); ok {
		h := sha256.Sum256([]byte(seed + strconv.Itoa(i)))
		return base64.RawURLEncoding.EncodeToString(h[:])
	}
	return prefix + strconv.Itoa(i)
}

// startIdlePosgate starts posgate with the hub's ping interval and GC settings and seeds n
// tenants of dialect straight into its database (the API would take minutes for 19 000).
func startIdlePosgate(ctx context.Context, dialect string, n int, ping time.Duration, gogc, limit, bin string) (*idlePosgate, error) {
	// startCluster passes this process's environment on.
	os.Setenv("GOGC", gogc)
	if limit != "" {
		os.Setenv("GOMEMLIMIT", limit)
	} else {
		os.Unsetenv("GOMEMLIMIT")
	}
	os.Setenv("POSGATE_HUB_PING_INTERVAL", strconv.Itoa(max(1, int(ping.Seconds()))))
	c, err := startCluster(ctx, RoundTripOptions{Store: "sqlite", Args: map[string]string{"bin": bin}})
	if err != nil {
		return nil, err
	}
	p := &idlePosgate{c: c, dialect: dialect}
	seed := p.seedDoshii
	p.prefix = "pg_lt_bench" + randHex(8) + "_"
	if dialect == "orderpay" {
		seed, p.prefix = p.seedOrderpay, ticketTokens+randHex(16)
	}
	if err := seed(ctx, n); err != nil {
		c.stop()
		return nil, err
	}
	return p, nil
}

func (p *idlePosgate) seedDoshii(ctx context.Context, n int) error {
	v, err := p.c.admin(ctx, "POST", "/doshii/vendors", map[string]any{"api_name": "idleco"}, http.StatusCreated)
	if err != nil {
		return err
	}
	key, _ := v["vendor_key"].(string)
	vendorID, _ := v["id"].(string)
	vc := &doshii.Client{BaseURL: p.c.url(0) + "/pos/v3", Vendor: "idleco", Key: doshii.NewVendorKey(key), HTTPClient: p.c.client}
	org, err := vc.CreateOrganisation(ctx, doshii.Organisation{Name: "Idle Cafes", Country: "AU",
		Location: &doshii.Location{Name: "Idle Cafe 0", Timezone: "Australia/Melbourne"}})
	if err != nil {
		return err
	}
	if vendorID == "" {
		return fmt.Errorf("no vendor id in %v", v)
	}
	now := time.Now().UnixMilli()
	return p.seedRows(ctx, n, func(tx *sql.Tx, i int) error {
		h := secret.Hash(idleToken(p.prefix, i))
		_, err := tx.ExecContext(ctx, `INSERT INTO doshii_locations (id, vendor_id, organisation_id, name, token_hash, body,
			created_at, updated_at, disconnected_at, disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, false)`,
			fmt.Sprintf("dl_idle%06d", i), vendorID, org.ID, fmt.Sprintf("Idle Cafe %d", i+1), h,
			[]byte(`{"timezone":"Australia/Melbourne"}`), now, now)
		return err
	})
}

// seedOrderpay stores n outlets sharing one AuthSecret hash (argon2id, computed once here, in
// the store's format) and one unused ticket per outlet, hashed as the auth endpoint stores them
// (SHA-256 of the token) and valid for an hour. The connect phase then measures the upgrade
// (ticket consumed, outlet read, hub), not n argon2id checks of POST /api/powerepos/v1/auth;
// and the server never runs argon2id, whose 64 MiB working memory would sit in the empty
// server's baseline until the runtime returns it.
func (p *idlePosgate) seedOrderpay(ctx context.Context, n int) error {
	hash, err := secret.HashPassword(secret.Generate(secret.PrefixOrderpaySecret))
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	return p.seedRows(ctx, n, func(tx *sql.Tx, i int) error {
		id := fmt.Sprintf("op_idle%06d", i)
		if _, err := tx.ExecContext(ctx, `INSERT INTO orderpay_outlets (id, provider_outlet_id, pos_remote_id,
			provider_id, provider_name, auth_secret_hash, disabled, created_at, updated_at)
			VALUES ($1, $2, $3, 1, 'Idle', $4, false, $5, $5)`,
			id, fmt.Sprintf("idle-outlet-%06d", i), fmt.Sprintf("idle-pos-%06d", i), hash, now); err != nil {
			return err
		}
		h := secret.Hash(idleToken(p.prefix, i))
		_, err := tx.ExecContext(ctx, `INSERT INTO orderpay_tickets (hash, outlet_id, created_at, expires_at, used_at)
			VALUES ($1, $2, $3, $4, NULL)`, h, id, now, now+time.Hour.Milliseconds())
		return err
	})
}

// seedRows runs row(tx, i) for i in [0, n) in one transaction on posgate's SQLite database (the
// store's own API writes one row per transaction).
func (p *idlePosgate) seedRows(ctx context.Context, n int, row func(tx *sql.Tx, i int) error) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.c.dir, "data", "posgate.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for i := range n {
		if err := row(tx, i); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// wsURL is the POS socket URL the client processes append a token to.
func (p *idlePosgate) wsURL() string {
	path := "/pos/socket"
	if p.dialect == "orderpay" {
		path = "/ws"
	}
	return "ws" + strings.TrimPrefix(p.c.url(0), "http") + path + "?token="
}

func (p *idlePosgate) stop() { p.c.stop() }

// stats reads the process's resident set and CPU from /proc and the runtime's figures from
// /metrics (posgate cannot be asked to collect: the heap includes its garbage).
func (p *idlePosgate) stats(bool) (*serverStats, error) {
	pid := p.c.procs[0].Process.Pid
	rss, _ := procStatus(pid, "VmRSS")
	cpu, _ := procCPU(pid)
	s := &serverStats{RSSKiB: rss, CPUNanos: int64(cpu)}
	resp, err := p.c.client.Get(p.c.url(0) + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			s.HeapInuse = int64(f)
		case "go_memstats_stack_inuse_bytes":
			s.StackInuse = int64(f)
		case "go_memstats_sys_bytes":
			s.Sys = int64(f)
		case "go_memstats_heap_released_bytes":
			s.Released = int64(f)
		case "go_goroutines":
			s.Goroutines = int(f)
		case "go_memstats_next_gc_bytes":
			s.NextGC = int64(f)
		case "go_gc_duration_seconds_count":
			s.NumGC = int64(f)
		case `posgate_hub_sockets{dialect="` + p.dialect + `"}`:
			s.Sockets = int(f)
		case "posgate_doshii_heartbeats_total":
			s.Pongs = int64(f)
		case "posgate_doshii_online_writes_total":
			s.StoreWrites = int64(f)
		}
	}
	return s, sc.Err()
}

// clientURL is the socket URL of client socket i: the server's, plus the i-th token when tokens
// name them.
func clientURL(base, tokenPrefix string, i int) string {
	if tokenPrefix == "" {
		return base
	}
	return base + url.QueryEscape(idleToken(tokenPrefix, i))
}
