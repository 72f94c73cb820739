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
