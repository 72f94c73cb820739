package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.Context(), filepath.Join(t.TempDir(), "posgate.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestConformanceInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.Context(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestReopen checks the data survives Close and Open, migrations are not re-applied, the file is
// private to its owner, and the pragmas the durability argument rests on are in force.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "posgate.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.UseOnce(ctx, "k", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.UseOnce(ctx, "k", now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Fatalf("after reopen: %v, want ErrAlreadyUsed", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", fi.Mode().Perm())
	}
	w := s.Store.Writer()
	// The writer's busy timeout is zero outside a wait for another process's lock (group.go,
	// open; TestWriterWaitsForLock).
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "0"} {
		var got string
		if err := w.QueryRow(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

// TestTwoOpensOneFile: two stores on one file (two processes sharing a volume, or a restart
// overlapping the old process) both open, migrate once, and see each other's writes.
func TestTwoOpensOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "posgate.db")
	var wg sync.WaitGroup
	stores := make([]*Store, 2)
	errs := make([]error, 2)
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(ctx, path)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	now := time.Now()
	if err := stores[0].UseOnce(ctx, "k", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := stores[1].UseOnce(ctx, "k", now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Fatalf("second store: %v, want ErrAlreadyUsed", err)
	}
}

func TestOpenRefusesBadPaths(t *testing.T) {
	for _, p := range []string{"", "x.db?mode=ro", "a#b"} {
		if s, err := Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// TestUnavailableWhenFileUnusable: a database that cannot be opened is an error at Open.
func TestOpenUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if s, err := Open(t.Context(), filepath.Join(dir, "x.db")); err == nil {
		s.Close()
		t.Fatal("Open in a read-only directory succeeded")
	}
}

func BenchmarkHotPaths(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		s, err := Open(b.Context(), filepath.Join(b.TempDir(), "posgate.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
