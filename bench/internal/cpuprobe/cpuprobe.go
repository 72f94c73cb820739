// Package cpuprobe reads the CPU the benchmarks attribute to requests: this process's, other
// processes' (a database server's backends) and PostgreSQL's commit counter.
package cpuprobe

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Process is the user and system CPU this process has used so far.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Pids sums user and system time of pids from /proc (clock ticks of 10 ms); a pid that is gone
// counts nothing.
func Pids(pids []int) time.Duration {
	var t time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which may contain spaces) start after the last ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		t += time.Duration(u+k) * 10 * time.Millisecond
	}
	return t
}

// PGCommits is the transactions committed in dsn's database so far, -1 when it cannot be read.
// The reading's own transaction is counted too: one per reading, the same before and after.
func PGCommits(ctx context.Context, dsn string) int64 {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// PGServerPIDs lists the server processes that work for dsn's database: its backends (a backend
// flushes the WAL for its own commit, and for the others waiting when it does) and the WAL
// writer, sorted. Other databases' backends on a shared server are left out.
func PGServerPIDs(ctx context.Context, dsn string) []int {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE (datname = current_database() AND pid <> pg_backend_pid()) OR backend_type = 'walwriter'`)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	slices.Sort(out)
	return out
}
