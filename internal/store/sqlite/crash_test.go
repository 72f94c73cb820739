package sqlite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// TestKill9KeepsAcknowledgedWrites runs writers in a child process, kills it with SIGKILL in the
// middle of the stream, and checks that the reopened file passes PRAGMA integrity_check and holds
// every write the child had acknowledged (printed after the call returned).
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if path := os.Getenv("POSGATE_SQLITE_CRASH_CHILD"); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "posgate.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsAcknowledgedWrites$")
	cmd.Env = append(os.Environ(), "POSGATE_SQLITE_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if key, ok := strings.CutPrefix(line, "ACK "); ok {
			acked = append(acked, key)
		}
		if len(acked) == 300 {
			_ = cmd.Process.Signal(syscall.SIGKILL) // writers are still running
			break
		}
	}
	// Acknowledgements already in the pipe when the child died count too.
	for sc.Scan() {
		if key, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked = append(acked, key)
		}
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("child acknowledged only %d writes before exiting", len(acked))
	}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var integrity string
	if err := s.Writer().QueryRow(t.Context(), "PRAGMA integrity_check").Scan(&integrity); err != nil {
		t.Fatal(err)
	}
	if integrity != "ok" {
		t.Fatalf("integrity_check: %s", integrity)
	}
	now := time.Now()
	for _, key := range acked {
		if err := s.UseOnce(t.Context(), key, now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
			t.Fatalf("acknowledged write %s lost after kill -9 (UseOnce: %v)", key, err)
		}
	}
	t.Logf("%d acknowledged writes all present after kill -9", len(acked))
}

// crashChild writes single-use records and audit events from several goroutines until killed,
// printing "ACK <key>" after each UseOnce returned nil.
func crashChild(path string) {
	s, err := Open(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("g%d-%d", g, i)
				now := time.Now()
				if err := s.UseOnce(context.Background(), key, now, now.Add(time.Hour)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				_ = s.AppendAudit(context.Background(), &store.AuditEvent{At: now, Actor: "test", Action: "crash.write", Target: key, Outcome: "ok"})
				mu.Lock()
				fmt.Fprintf(w, "ACK %s\n", key)
				w.Flush()
				mu.Unlock()
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
	if path := os.Getenv("POSGATE_SQLITE_GROUP_CRASH_CHILD"); path != "" {
		groupCrashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "posgate.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9GroupCommit$")
	cmd.Env = append(os.Environ(), "POSGATE_SQLITE_GROUP_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var uses [][2]string // key
	var rots [][2]string // old hash, new hash
	maxUnits := 0
	read := func(line string) {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "ACK" {
			return
		}
		switch f[1] {
		case "use":
			uses = append(uses, [2]string{f[2]})
		case "rot":
			old, next, _ := strings.Cut(f[2], ">")
			rots = append(rots, [2]string{old, next})
		}
		var n int
		if _, err := fmt.Sscan(f[3], &n); err == nil && n > maxUnits {
			maxUnits = n
		}
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		read(sc.Text())
		if len(uses)+len(rots) >= 600 {
			_ = cmd.Process.Signal(syscall.SIGKILL) // writers are still running
			break
		}
	}
	for sc.Scan() {
		read(sc.Text())
	}
	_ = cmd.Wait()
	if len(uses)+len(rots) < 600 {
		t.Fatalf("child acknowledged only %d writes before exiting", len(uses)+len(rots))
	}
	if maxUnits < 2 {
		t.Fatalf("the largest committed batch held %d units: the writers were not group-committed", maxUnits)
	}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var integrity string
	if err := s.Writer().QueryRow(t.Context(), "PRAGMA integrity_check").Scan(&integrity); err != nil {
		t.Fatal(err)
	}
	if integrity != "ok" {
		t.Fatalf("integrity_check: %s", integrity)
	}
	now := time.Now()
	for _, u := range uses {
		if err := s.UseOnce(t.Context(), u[0], now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
			t.Fatalf("acknowledged single use %s lost after kill -9 (UseOnce: %v)", u[0], err)
		}
	}
	for _, r := range rots {
		old, _, err := s.GetRefreshToken(t.Context(), []byte(r[0]))
		if err != nil || old.RotatedAt == nil || string(old.SuccessorHash) != r[1] {
			t.Fatalf("acknowledged rotation %s>%s lost after kill -9: %+v, %v", r[0], r[1], old, err)
		}
		if _, _, err := s.GetRefreshToken(t.Context(), []byte(r[1])); err != nil {
			t.Fatalf("acknowledged successor %s lost after kill -9: %v", r[1], err)
		}
	}
	t.Logf("%d single uses and %d rotations acknowledged, all present after kill -9; largest batch %d units",
		len(uses), len(rots), maxUnits)
}

// groupCrashChild runs 32 writers until killed: even ones record single uses, odd ones rotate
// their own refresh chain. Each prints "ACK use <key> <n>" or "ACK rot <old>><new> <n>" after its
// call returned nil, n being the largest batch committed so far.
func groupCrashChild(path string) {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	g := s.group
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	ack := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(w, format, args...)
		w.Flush()
		mu.Unlock()
	}
	die := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var wg sync.WaitGroup
	for n := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := time.Now()
			if n%2 == 0 {
				for i := 0; ; i++ {
					key := fmt.Sprintf("g%d-%d", n, i)
					if err := s.UseOnce(ctx, key, now, now.Add(time.Hour)); err != nil {
						die(err)
					}
					ack("ACK use %s %d\n", key, g.maxUnits.Load())
				}
			}
			fam := fmt.Sprintf("rf_%d", n)
			cur := fmt.Sprintf("t%d-0", n)
			if err := s.CreateRefreshFamily(ctx, &store.RefreshFamily{ID: fam, ClientID: "c", UserID: "u", Audience: "a",
				Scope: "s", CreatedAt: now, AbsoluteExpiresAt: now.Add(time.Hour)},
				&store.RefreshToken{Hash: []byte(cur), CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}); err != nil {
				die(err)
			}
			for i := 1; ; i++ {
				next := fmt.Sprintf("t%d-%d", n, i)
				if err := s.RotateRefreshToken(ctx, []byte(cur), time.Now(), &store.RefreshToken{Hash: []byte(next),
					CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}, nil, false); err != nil {
					die(err)
				}
				ack("ACK rot %s>%s %d\n", cur, next, g.maxUnits.Load())
				cur = next
			}
		}()
	}
	wg.Wait()
}
