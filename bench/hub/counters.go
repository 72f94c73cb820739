package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Counters that do not depend on the machine's load, read over the same window as the CPU per
// request: the system calls that carry the store's cost (fsync, the file reads and writes) and,
// on PostgreSQL, the database's committed transactions and row operations. Latency on a shared
// machine scatters; these do not.

// perfEvents are the system calls counted with -args perf=1 (`perf stat`, kernel tracepoints:
// the posgate process is not slowed the way strace slows it), then the software events counted
// with them: every system call (raw_syscalls:sys_enter) and context switch. On this VM a
// system call and a thread wake-up cost more than most of the user-space work of a request.
var perfEvents = []string{"fsync", "fdatasync", "pwrite64", "pread64", "write", "read", "sendto", "recvfrom",
	"fcntl", "futex", "nanosleep", "epoll_pwait"}

// perfTotals are the other events counted with perfEvents, under their names in perf's output.
var perfTotals = []string{"raw_syscalls:sys_enter", "context-switches"}

// perfStat counts perfEvents of one process until stopped.
type perfStat struct {
	cmd  *exec.Cmd
	file string
}

func startPerfStat(dir string, pid int) (*perfStat, error) {
	ev := make([]string, len(perfEvents), len(perfEvents)+len(perfTotals))
	for i, e := range perfEvents {
		ev[i] = "syscalls:sys_enter_" + e
	}
	ev = append(ev, perfTotals...)
	f := filepath.Join(dir, fmt.Sprintf("perf-%d.csv", pid))
	cmd := exec.Command("perf", "stat", "-x", ",", "-o", f, "-e", strings.Join(ev, ","), "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf stat (-args perf=1 needs perf and tracepoint access): %w", err)
	}
	return &perfStat{cmd: cmd, file: f}, nil
}

// stop ends the count and returns it per event.
func (p *perfStat) stop() map[string]int64 {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	_ = p.cmd.Wait()
	b, _ := os.ReadFile(p.file)
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[strings.TrimPrefix(f[2], "syscalls:sys_enter_")] = n
		}
	}
	return out
}

// pgCounts are the private database's statistics (pg_stat_database): committed transactions
// and the rows returned, inserted and updated, over every connection of every replica.
type pgCounts struct{ commits, fetched, inserted, updated int64 }

func (c *cluster) pgCounts(ctx context.Context) (pgCounts, error) {
	var n pgCounts
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.adminDSN)
	if err != nil {
		return n, err
	}
	defer conn.Close(ctx)
	// The statistics are sent to the collector at transaction end, up to a second late.
	_, _ = conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
	err = conn.QueryRow(ctx, `SELECT xact_commit, tup_fetched, tup_inserted, tup_updated
		FROM pg_stat_database WHERE datname = $1`, c.dbName).Scan(&n.commits, &n.fetched, &n.inserted, &n.updated)
	return n, err
}

// startCounters begins the counted window (with loadStarts).
func (c *cluster) startCounters() {
	if c.perf {
		for _, p := range c.procs {
			ps, err := startPerfStat(c.dir, p.Process.Pid)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				break
			}
			c.perfs = append(c.perfs, ps)
		}
	}
	if c.dbName != "" {
		if n, err := c.pgCounts(context.Background()); err == nil {
			c.pg0 = &n
		}
	}
}

// reportCounters ends the window and prints the counts per request sent.
func (c *cluster) reportCounters(n int64) {
	for i, ps := range c.perfs {
		got := ps.stop()
		var parts []string
		for _, e := range perfEvents {
			parts = append(parts, fmt.Sprintf("%s %.2f", e, float64(got[e])/float64(n)))
		}
		fmt.Fprintf(os.Stderr, "posgate %d: system calls per request: %s\n", i, strings.Join(parts, ", "))
		fmt.Fprintf(os.Stderr, "posgate %d: per request: all system calls %.2f, context switches %.2f\n", i,
			float64(got["raw_syscalls:sys_enter"])/float64(n), float64(got["context-switches"])/float64(n))
	}
	c.perfs = nil
	if c.pg0 != nil {
		time.Sleep(600 * time.Millisecond) // PGSTAT_MIN_INTERVAL: the last counts reach the view
		if n1, err := c.pgCounts(context.Background()); err == nil {
			d := func(a, b int64) float64 { return float64(b-a) / float64(n) }
			fmt.Fprintf(os.Stderr, "postgres: per request %.2f commits, %.2f rows fetched, %.2f inserted, %.2f updated\n",
				d(c.pg0.commits, n1.commits), d(c.pg0.fetched, n1.fetched), d(c.pg0.inserted, n1.inserted), d(c.pg0.updated, n1.updated))
		}
		c.pg0 = nil
	}
}
