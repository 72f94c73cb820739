package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
)

// TestKill9KeepsAcknowledgedWrites runs 32 writers in a child process (single-use records and
// refresh rotations, which go to the server as one batch each), kills the child with SIGKILL in
// the middle of the stream, and checks that every write the child had acknowledged (printed after
// the call returned) is in the database.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if dsn := os.Getenv("POSGATE_PG_CRASH_CHILD"); dsn != "" {
		crashChild(dsn)
		return
	}
	dsn := pgtest.NewDatabase(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsAcknowledgedWrites$")
	cmd.Env = append(os.Environ(), "POSGATE_PG_CRASH_CHILD="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var uses []string
	var rots [][2]string // old hash, new hash
	read := func(line string) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "ACK" {
			return
		}
		switch f[1] {
		case "use":
			uses = append(uses, f[2])
		case "rot":
			old, next, _ := strings.Cut(f[2], ">")
			rots = append(rots, [2]string{old, next})
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

	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for _, key := range uses {
		if err := s.UseOnce(t.Context(), key, now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
			t.Fatalf("acknowledged single use %s lost after kill -9 (UseOnce: %v)", key, err)
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
	t.Logf("%d single uses and %d rotations acknowledged, all present after kill -9", len(uses), len(rots))
}

// crashChild runs 32 writers until killed: even ones record single uses, odd ones rotate their
// own refresh chain, each printing "ACK use <key>" or "ACK rot <old>><new>" after its call
// returned nil.
func crashChild(dsn string) {
	ctx := context.Background()
	s, err := Open(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
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
					ack("ACK use %s\n", key)
				}
			}
			cur := fmt.Sprintf("t%d-0", n)
			if err := s.CreateRefreshFamily(ctx, &store.RefreshFamily{ID: fmt.Sprintf("rf_%d", n), ClientID: "c", UserID: "u",
				Audience: "a", Scope: "s", CreatedAt: now, AbsoluteExpiresAt: now.Add(time.Hour)},
				&store.RefreshToken{Hash: []byte(cur), CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}); err != nil {
				die(err)
			}
			for i := 1; ; i++ {
				next := fmt.Sprintf("t%d-%d", n, i)
				if err := s.RotateRefreshToken(ctx, []byte(cur), time.Now(), &store.RefreshToken{Hash: []byte(next),
					CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}, nil, false); err != nil {
					die(err)
				}
				ack("ACK rot %s>%s\n", cur, next)
				cur = next
			}
		}()
	}
	wg.Wait()
}
