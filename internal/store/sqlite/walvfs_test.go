package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeSyscalls is the process's count of write system calls (write, pwrite64, …) so far.
func writeSyscalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscw in /proc/self/io")
	return 0
}

// TestWALOneWritePerCommit: a commit's log frames reach the file in one write, where SQLite's unix
// VFS makes two per frame (header, page). Each UseOnce commits alone here and dirties at least
// two pages (the table and its primary key index), so the unix VFS alone makes four writes or more
// per commit.
func TestWALOneWritePerCommit(t *testing.T) {
	s, g := openFile(t)
	ctx := t.Context()
	now := time.Now()
	if err := s.UseOnce(ctx, "k0", now, now.Add(time.Hour)); err != nil { // the log's header
		t.Fatal(err)
	}
	commits, writes := g.commits.Load(), writeSyscalls(t)
	for i := range 20 {
		if err := s.UseOnce(ctx, fmt.Sprint("k", i+1), now, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	n, w := g.commits.Load()-commits, writeSyscalls(t)-writes
	if n != 20 {
		t.Fatalf("%d commits, want 20 (one per serial write)", n)
	}
	// One per commit; the margin is for a write of the process that is not the log's (the
	// unix VFS alone makes at least 4n).
	if w >= 2*n {
		t.Errorf("%d write system calls for %d commits, want one per commit", w, n)
	}
}

// TestWALLargeCommit: a commit whose frames exceed what the unix VFS writes in one call (0x1ffff
// bytes) is written in several, and reads back whole on another connection.
func TestWALLargeCommit(t *testing.T) {
	s, _ := openFile(t)
	ctx := t.Context()
	big := strings.Repeat("x", 3<<20)
	if _, err := s.Writer().Exec(ctx, `INSERT INTO single_use (name, used_at, expires_at) VALUES ($1, 1, 2)`, big); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := s.Reader().QueryRow(ctx, `SELECT length(name) FROM single_use WHERE used_at = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(big)) {
		t.Fatalf("read back %d bytes, want %d", n, len(big))
	}
}

// TestWALVFSWithoutSync: with synchronous=NORMAL a COMMIT does not sync the log, so nothing
// writes the buffer out before the new wal-index header but the barrier: another connection
// (on the unix VFS) must still read what was committed.
func TestWALVFSWithoutSync(t *testing.T) {
	if err := registerWALVFS(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.db")
	w, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&vfs="+walVFSName)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)`); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		v := bytes.Repeat([]byte{byte(i)}, 3000)
		if _, err := w.Exec(`INSERT INTO t (k, v) VALUES (?, ?)`, i, v); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := r.QueryRow(`SELECT v FROM t WHERE k = ?`, i).Scan(&got); err != nil {
			t.Fatalf("row %d on the other connection: %v", i, err)
		}
		if !bytes.Equal(got, v) {
			t.Fatalf("row %d on the other connection: wrong bytes", i)
		}
	}
}

// TestWALVFSNeedsFullSync: the writer opens through the buffering VFS only with
// synchronous=FULL, under which every COMMIT's sync writes the buffer out and reports a failed
// write before its frames are published (see walvfs.go).
func TestWALVFSNeedsFullSync(t *testing.T) {
	if strings.Contains(writerParams, "vfs="+walVFSName) && !strings.Contains(writerParams, "synchronous(FULL)") {
		t.Fatalf("the writer uses %s without synchronous=FULL: %s", walVFSName, writerParams)
	}
}
