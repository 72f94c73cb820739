// Command storefloor measures what one write costs a PostgreSQL server when nothing else runs:
// posgate's own store (internal/store/postgres, the same pgx pool and statements) called directly
// by concurrent workers, without HTTP, authentication or token signing, beside the smallest durable
// transaction the same driver can send. It prints, per operation, the rate, the CPU of this
// process, the CPU of the server (the database's backends and the WAL writer, from /proc), the
// transactions committed and the messages the backends received.
//
//	go run ./bench/pgfloor/storefloor -dsn 'postgres://postgres@127.0.0.1:5432/floor?sslmode=disable' \
//	    -shapes select1,insert,refresh,jwt-bearer,consume -concurrency 8 -duration 3s
//
// The database is migrated by the store; the shapes' own rows (a client, a user, one refresh chain
// per worker, the table floor_insert) are created in it.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/posgate/posgate/bench/internal/cpuprobe"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/postgres"
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL DSN of a database of its own (required)")
	shapes := flag.String("shapes", "select1,insert,refresh,jwt-bearer,consume", "comma-separated shapes (see shapes)")
	conc := flag.Int("concurrency", 8, "concurrent workers")
	dur := flag.Duration("duration", 3*time.Second, "measured time per shape")
	warm := flag.Duration("warmup", 500*time.Millisecond, "unmeasured warm-up per shape")
	flag.Parse()
	if *dsn == "" {
		fmt.Fprintln(os.Stderr, "storefloor: -dsn is required")
		os.Exit(2)
	}
	if err := run(*dsn, strings.Split(*shapes, ","), *conc, *dur, *warm); err != nil {
		fmt.Fprintln(os.Stderr, "storefloor:", err)
		os.Exit(1)
	}
}

// env is what the shapes share: posgate's store and a bare pool on the same DSN.
type env struct {
	st     *postgres.Store
	pool   *pgxpool.Pool
	client *store.Client
	user   *store.User
	seq    atomic.Int64
	chains []*chain // one refresh chain per worker
}

type chain struct{ hash []byte }

// op is one operation of a shape by worker w.
type op func(ctx context.Context, w int) error

func run(dsn string, shapes []string, conc int, dur, warm time.Duration) error {
	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	e := &env{st: st, pool: pool}
	if err := e.setup(ctx, conc); err != nil {
		return err
	}
	fmt.Printf("store floor: %d workers, %s per shape (+%s warm-up), GOMAXPROCS=%d\n", conc, dur, warm, runtime.GOMAXPROCS(0))
	fmt.Printf("%-12s %9s %10s %10s %10s %9s %9s %9s\n", "shape", "ops/s", "p50", "cpu/op", "pg cpu/op", "total/op", "xact/op", "recv/op")
	for _, name := range shapes {
		f, ok := e.shapes()[name]
		if !ok {
			return fmt.Errorf("unknown shape %q", name)
		}
		r := measure(ctx, dsn, f, conc, dur, warm)
		fmt.Printf("%-12s %9.0f %10s %9.0fµs %9.0fµs %8.0fµs %9.2f %9.2f\n", name, r.rate(), r.p50.Round(time.Microsecond),
			r.per(r.cpu), r.per(r.pgCPU), r.per(r.cpu+r.pgCPU), float64(r.xacts)/float64(r.n), float64(r.recvs)/float64(r.n))
	}
	return nil
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func (e *env) setup(ctx context.Context, conc int) error {
	now := time.Now()
	e.client = &store.Client{ID: "cl_" + randomHex(), Name: "floor", ClientIDHash: hash(randomHex()), ClientIDHint: "floor",
		GrantTypes: []string{"refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"}, Scopes: []string{"offline_access"},
		Audiences: []string{"https://api.floor.test"}, CreatedAt: now, UpdatedAt: now}
	if err := e.st.CreateClient(ctx, e.client); err != nil {
		return err
	}
	e.user = &store.User{ID: "us_" + randomHex(), Username: "floor-" + randomHex(), PasswordHash: "x", CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour)}
	if err := e.st.CreateUser(ctx, e.user); err != nil {
		return err
	}
	for range conc {
		f := &store.RefreshFamily{ID: "rf_" + randomHex(), ClientID: e.client.ID, UserID: e.user.ID, Audience: "https://api.floor.test",
			Scope: "offline_access", CreatedAt: now, AbsoluteExpiresAt: now.Add(24 * time.Hour)}
		first := &store.RefreshToken{Hash: hash(randomHex()), CreatedAt: now, IdleExpiresAt: now.Add(24 * time.Hour)}
		if err := e.st.CreateRefreshFamily(ctx, f, first); err != nil {
			return err
		}
		e.chains = append(e.chains, &chain{hash: first.Hash})
	}
	_, err := e.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS floor_insert (k text PRIMARY KEY, at bigint NOT NULL)`)
	return err
}

// shapes: select1 and insert are the driver's floor (a read round trip; the smallest durable
// transaction: one row of one indexed table, one commit); refresh, jwt-bearer and consume are
// posgate's store calls of those flows with the arguments the grants pass.
func (e *env) shapes() map[string]op {
	return map[string]op{
		"select1": func(ctx context.Context, _ int) error {
			var one int
			return e.pool.QueryRow(ctx, `SELECT 1`).Scan(&one)
		},
		"insert": func(ctx context.Context, _ int) error {
			_, err := e.pool.Exec(ctx, `INSERT INTO floor_insert (k, at) VALUES ($1, $2)`, randomHex(), time.Now().UnixMilli())
			return err
		},
		"insert4": func(ctx context.Context, _ int) error { // four rows a statement: one op is a statement
			_, err := e.pool.Exec(ctx, `INSERT INTO floor_insert (k, at) VALUES ($1, $5), ($2, $5), ($3, $5), ($4, $5)`,
				randomHex(), randomHex(), randomHex(), randomHex(), time.Now().UnixMilli())
			return err
		},
		"refresh": func(ctx context.Context, w int) error {
			c := e.chains[w]
			next := hash(randomHex())
			now := time.Now()
			used, err := e.st.UseRefreshToken(ctx, &store.RefreshUse{Hash: c.hash, At: now, ClientID: e.client.ID,
				NotAudiences: []string{"jackpot"}, NextHash: next, NextIdleExpiresAt: now.Add(time.Hour)})
			if err != nil {
				return err
			}
			if !used.Rotated {
				return fmt.Errorf("refresh not rotated")
			}
			c.hash = next
			return nil
		},
		"jwt-bearer": func(ctx context.Context, _ int) error {
			now := time.Now()
			_, err := e.st.UseOnceAsClient(ctx, e.client.ID, e.client.Version, []string{"jackpot:nk:" + randomHex()}, now, now.Add(time.Hour))
			return err
		},
		"consume": func(ctx context.Context, _ int) error {
			now := time.Now()
			jti := randomHex()
			if err := e.st.UseOnce(ctx, "consume:"+jti, now, now.Add(time.Hour)); err != nil {
				return err
			}
			return e.st.AddRevocation(ctx, store.Revocation{Kind: "jti", Value: jti, RevokedAt: now, ExpiresAt: now.Add(time.Hour), Reason: "floor"})
		},
	}
}

type result struct {
	n            int64
	elapsed      time.Duration
	p50          time.Duration
	cpu, pgCPU   time.Duration
	xacts, recvs int64
}

func (r *result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }
func (r *result) per(d time.Duration) float64 {
	if r.n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(r.n)
}

// measure runs f on conc workers for warm+dur and counts the measured phase only. Server CPU is
// summed over the backends of this database and the WAL writer, read again at the end so that
// backends started during the run count too (from zero).
func measure(ctx context.Context, dsn string, f op, conc int, dur, warm time.Duration) *result {
	var measuring atomic.Bool
	var stop atomic.Bool
	var n atomic.Int64
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				t0 := time.Now()
				if err := f(ctx, w); err != nil {
					firstErr.CompareAndSwap(nil, err)
					stop.Store(true)
					return
				}
				if measuring.Load() {
					n.Add(1)
					lat[w] = append(lat[w], time.Since(t0))
				}
			}
		}()
	}
	time.Sleep(warm)
	pids := cpuprobe.PGServerPIDs(ctx, dsn)
	x0 := cpuprobe.PGCommits(ctx, dsn)
	srv0 := cpuprobe.Pids(pids)
	stopRecv := countRecv(pids)
	c0 := cpuprobe.Process()
	t0 := time.Now()
	measuring.Store(true)
	time.Sleep(dur)
	measuring.Store(false)
	r := &result{elapsed: time.Since(t0), n: n.Load()}
	r.cpu = cpuprobe.Process() - c0
	after := cpuprobe.PGServerPIDs(ctx, dsn)
	r.pgCPU = cpuprobe.Pids(after) - srv0 + cpuprobe.Pids(slices.DeleteFunc(slices.Clone(pids), func(p int) bool { return slices.Contains(after, p) }))
	r.recvs = stopRecv()
	stop.Store(true)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Fprintln(os.Stderr, "storefloor: a worker stopped:", err)
	}
	time.Sleep(1200 * time.Millisecond) // statistics reach pg_stat_database within a second
	r.xacts = cpuprobe.PGCommits(ctx, dsn) - x0 - 1
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) > 0 {
		slices.Sort(all)
		r.p50 = all[len(all)/2]
	}
	return r
}

// countRecv counts the recvfrom calls of pids that returned data (perf tracepoint), about one per
// round trip; the returned function stops counting (0 without perf).
func countRecv(pids []int) func() int64 {
	path, err := exec.LookPath("perf")
	if err != nil || len(pids) == 0 {
		return func() int64 { return 0 }
	}
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	var out strings.Builder
	cmd := exec.Command(path, "stat", "-x", ",", "-e", "syscalls:sys_exit_recvfrom", "--filter", "ret > 0", "-p", strings.Join(ps, ","))
	cmd.Stderr = &out
	if cmd.Start() != nil {
		return func() int64 { return 0 }
	}
	time.Sleep(100 * time.Millisecond)
	return func() int64 {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Split(line, ","); len(f) >= 3 && f[2] == "syscalls:sys_exit_recvfrom" {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
		return 0
	}
}
