package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/testutil/crashtest"
)

// TestKill9KeepsAcknowledgedWrites runs writers in a child process, kills it with SIGKILL in the
// middle of the stream, and checks that the reopened file passes PRAGMA integrity_check and holds
// every write the child had acknowledged (printed after the call returned).
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if path := crashtest.Child(); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "posgate.db")
	acks := crashtest.Kill9(t, path, 300)
	s := openIntact(t, path)
	crashtest.Check(t, s, acks)
	t.Logf("%d acknowledged writes all present after kill -9", acks.Len())
}

// openIntact reopens the file the child wrote and fails t unless PRAGMA integrity_check passes.
func openIntact(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var integrity string
	if err := s.Writer().QueryRow(t.Context(), "PRAGMA integrity_check").Scan(&integrity); err != nil {
		t.Fatal(err)
	}
	if integrity != "ok" {
		t.Fatalf("integrity_check: %s", integrity)
	}
	return s
}

// crashChild writes single-use records and audit events from several goroutines until killed,
// acknowledging each key after its UseOnce returned nil.
func crashChild(path string) {
	s, err := Open(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ack := crashtest.NewAcker()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("g%d-%d", g, i)
				now := time.Now()
				if err := s.UseOnce(context.Background(), key, now, now.Add(time.Hour)); err != nil {
					crashtest.Die(err)
				}
				_ = s.AppendAudit(context.Background(), &store.AuditEvent{At: now, Actor: "test", Action: "crash.write", Target: key, Outcome: "ok"})
				ack.Use(key, 0)
			}
		}()
	}
	wg.Wait()
}

// TestKill9GroupCommit is the kill -9 test under group commit: many writers in flight at once
// (single-use records and refresh rotations, which read before they write), so the child dies
// with transactions of several callers open, being committed, or committed and not yet
// answered. Every write the child acknowledged must be on disk after the kill, integrity_check
// must pass, and the child must really have committed several callers in one transaction.
func TestKill9GroupCommit(t *testing.T) {
	if path := crashtest.Child(); path != "" {
		s, err := Open(context.Background(), path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		crashtest.Writers(s, 32, s.group.maxUnits.Load)
		return
	}
	path := filepath.Join(t.TempDir(), "posgate.db")
	acks := crashtest.Kill9(t, path, 600)
	if acks.MaxUnits < 2 {
		t.Fatalf("the largest committed batch held %d units: the writers were not group-committed", acks.MaxUnits)
	}
	s := openIntact(t, path)
	crashtest.Check(t, s, acks)
	t.Logf("%d single uses and %d rotations acknowledged, all present after kill -9; largest batch %d units",
		len(acks.Uses), len(acks.Rots), acks.MaxUnits)
}
