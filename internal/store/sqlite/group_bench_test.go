package sqlite

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/testutil/goroutines"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGroupWrite measures what one write through the group writer costs the process besides
// SQLite's own work: allocations, goroutines started (each one a thread wake-up on an idle
// processor), commits (fsyncs) and the process's CPU time per write (the wall time is the
// fsyncs'). "serial": one caller, every write its own commit; "parallel": 8 callers per processor
// sharing commits. A write is UseOnce (one statement, one unit), an INSERT … RETURNING read in its
// unit, or CreateRefreshFamily (a transaction of two statements).
func BenchmarkGroupWrite(b *testing.B) {
	now := time.Now().Truncate(time.Millisecond)
	writes := map[string]func(s *Store, i int64) error{
		"UseOnce": func(s *Store, i int64) error {
			return s.UseOnce(b.Context(), fmt.Sprint("k", i), now, now.Add(time.Hour))
		},
		"Returning": func(s *Store, i int64) error { // a statement whose row is read in the unit
			var name string
			return s.Writer().QueryRow(b.Context(),
				`INSERT INTO single_use (name, used_at, expires_at) VALUES (?, 1, 2) RETURNING name`, fmt.Sprint("r", i)).Scan(&name)
		},
		"Tx": func(s *Store, i int64) error {
			id := fmt.Sprint("rf_", i)
			return s.CreateRefreshFamily(b.Context(), &store.RefreshFamily{ID: id, ClientID: "c", UserID: "u",
				Audience: "a", Scope: "s", CreatedAt: now, AbsoluteExpiresAt: now.Add(time.Hour)},
				&store.RefreshToken{Hash: []byte(id), FamilyID: id, CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)})
		},
	}
	for _, name := range []string{"UseOnce", "Returning", "Tx"} {
		write := writes[name]
		for _, par := range []bool{false, true} {
			mode := "serial"
			if par {
				mode = "parallel"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				s, err := Open(b.Context(), filepath.Join(b.TempDir(), "posgate.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var n atomic.Int64
				commits, gs, cpu := s.group.commits.Load(), goroutines.Created(), cpuTime()
				b.ReportAllocs()
				b.ResetTimer()
				if par {
					b.SetParallelism(8)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := write(s, n.Add(1)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				} else {
					for b.Loop() {
						if err := write(s, n.Add(1)); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				ops := float64(n.Load())
				b.ReportMetric(float64(s.group.commits.Load()-commits)/ops, "commits/op")
				b.ReportMetric(float64(goroutines.Created()-gs)/ops, "goroutines/op")
				b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/ops, "cpu-µs/op")
			})
		}
	}
}
