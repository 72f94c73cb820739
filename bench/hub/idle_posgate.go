package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/client/doshii"
	_ "modernc.org/sqlite" // the seed writes posgate's database directly
)

// idlePosgate is `posgate serve` (SQLite) holding doshii POS sockets for the idle benchmark:
// one vendor, one organisation and one location per socket, each socket opened with its own
// location token (GET /pos/socket?token=…), so the heartbeats take the whole path — token
// check, hub, heartbeat codec, the batched store write of the online deadline.
type idlePosgate struct {
	c      *cluster
	prefix string // location token i is prefix + i
}

// startIdlePosgate starts posgate with the hub's ping interval and GC settings and seeds n
// locations straight into its database (the API would take minutes for 19 000).
func startIdlePosgate(ctx context.Context, n int, ping time.Duration, gogc, limit, bin string) (*idlePosgate, error) {
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
	p := &idlePosgate{c: c, prefix: "pg_lt_bench" + randHex(8) + "_"}
	if err := p.seed(ctx, n); err != nil {
		c.stop()
		return nil, err
	}
	return p, nil
}

func (p *idlePosgate) seed(ctx context.Context, n int) error {
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
	// The store's own API writes one location per transaction; one transaction for all.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.c.dir, "data", "posgate.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	for i := range n {
		h := sha256.Sum256([]byte(p.prefix + strconv.Itoa(i)))
		if _, err := tx.ExecContext(ctx, `INSERT INTO doshii_locations (id, vendor_id, organisation_id, name, token_hash, body,
			created_at, updated_at, disconnected_at, disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, false)`,
			fmt.Sprintf("dl_idle%06d", i), vendorID, org.ID, fmt.Sprintf("Idle Cafe %d", i+1), h[:],
			[]byte(`{"timezone":"Australia/Melbourne"}`), now, now); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// wsURL is the POS socket URL the client processes append a token to.
func (p *idlePosgate) wsURL() string {
	return "ws" + strings.TrimPrefix(p.c.url(0), "http") + "/pos/socket?token="
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
		case `posgate_hub_sockets{dialect="doshii"}`:
			s.Sockets = int(f)
		case "posgate_doshii_heartbeats_total":
			s.Pongs = int64(f)
		case "posgate_doshii_online_writes_total":
			s.StoreWrites = int64(f)
		}
	}
	return s, sc.Err()
}

// clientURL is the socket URL of client socket i: the server's, plus the i-th location token
// when tokens name them.
func clientURL(base, tokenPrefix string, i int) string {
	if tokenPrefix == "" {
		return base
	}
	return base + url.QueryEscape(tokenPrefix+strconv.Itoa(i))
}
