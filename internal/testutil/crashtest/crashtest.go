// Package crashtest is the kill -9 harness every store backend shares: a test re-runs itself in a
// child process that writes until it is killed with SIGKILL in the middle of the stream, and then
// checks that every write the child acknowledged (printed after the call returned) is in the
// reopened store.
//
// The child prints one line per acknowledged write: "ACK use <key> <n>" for a single use,
// "ACK rot <old>><new> <n>" for a refresh rotation, n being a figure the child reports beside
// it (the largest group-committed batch so far, or 0).
package crashtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// childEnv carries the store's address (a file path or a DSN) to the child.
const childEnv = "POSGATE_CRASH_CHILD"

// Child returns the store address the parent gave when this process is the child of Kill9, and ""
// when it is the test itself. A test starts with:
//
//	if addr := crashtest.Child(); addr != "" { runChild(addr); return }
func Child() string { return os.Getenv(childEnv) }

// Acks is what the child acknowledged before it died.
type Acks struct {
	Uses     []string    // single-use keys
	Rots     [][2]string // refresh rotations: old hash, new hash
	MaxUnits int         // the largest figure the child printed beside an acknowledgement
}

// Len is the number of acknowledged writes.
func (a *Acks) Len() int { return len(a.Uses) + len(a.Rots) }

func (a *Acks) read(line string) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "ACK" {
		return
	}
	switch f[1] {
	case "use":
		a.Uses = append(a.Uses, f[2])
	case "rot":
		old, next, _ := strings.Cut(f[2], ">")
		a.Rots = append(a.Rots, [2]string{old, next})
	}
	var n int
	if _, err := fmt.Sscan(f[3], &n); err == nil && n > a.MaxUnits {
		a.MaxUnits = n
	}
}

// Kill9 runs t's own test again in a child process with addr as its store, kills the child with
// SIGKILL once it has acknowledged n writes (its writers are still running), and returns every
// acknowledgement it printed, including those already in the pipe when it died. It fails t when
// the child exits before n.
func Kill9(t *testing.T, addr string, n int) *Acks {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$")
	cmd.Env = append(os.Environ(), childEnv+"="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := &Acks{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		acks.read(sc.Text())
		if acks.Len() >= n {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	for sc.Scan() {
		acks.read(sc.Text())
	}
	_ = cmd.Wait()
	if acks.Len() < n {
		t.Fatalf("child acknowledged only %d writes before exiting", acks.Len())
	}
	return acks
}

// Acker prints the child's acknowledgements; it is safe for concurrent use.
type Acker struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// NewAcker returns an Acker writing to standard output, which Kill9 reads.
func NewAcker() *Acker { return &Acker{w: bufio.NewWriter(os.Stdout)} }

// Use acknowledges a single use of key.
func (a *Acker) Use(key string, n int64) { a.ack("ACK use %s %d\n", key, n) }

// Rot acknowledges the rotation of old into next.
func (a *Acker) Rot(old, next string, n int64) { a.ack("ACK rot %s>%s %d\n", old, next, n) }

func (a *Acker) ack(format string, args ...any) {
	a.mu.Lock()
	fmt.Fprintf(a.w, format, args...)
	a.w.Flush()
	a.mu.Unlock()
}

// Die ends the child after a failed write; the parent then sees fewer acknowledgements than it
// waited for.
func Die(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(3)
}

// Writes is what the child writes with.
type Writes interface {
	store.SingleUse
	store.RefreshTokens
}

// Writers runs n writers until the process is killed: even ones record single uses, odd ones
// rotate their own refresh chain (a read before the write). units reports the figure printed
// beside each acknowledgement (nil: 0).
func Writers(s Writes, n int, units func() int64) {
	ctx := context.Background()
	if units == nil {
		units = func() int64 { return 0 }
	}
	ack := NewAcker()
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := time.Now()
			if g%2 == 0 {
				for i := 0; ; i++ {
					key := fmt.Sprintf("g%d-%d", g, i)
					if err := s.UseOnce(ctx, key, now, now.Add(time.Hour)); err != nil {
						Die(err)
					}
					ack.Use(key, units())
				}
			}
			cur := fmt.Sprintf("t%d-0", g)
			if err := s.CreateRefreshFamily(ctx, &store.RefreshFamily{ID: fmt.Sprintf("rf_%d", g), ClientID: "c", UserID: "u",
				Audience: "a", Scope: "s", CreatedAt: now, AbsoluteExpiresAt: now.Add(time.Hour)},
				&store.RefreshToken{Hash: []byte(cur), CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}); err != nil {
				Die(err)
			}
			for i := 1; ; i++ {
				next := fmt.Sprintf("t%d-%d", g, i)
				if err := s.RotateRefreshToken(ctx, []byte(cur), time.Now(), &store.RefreshToken{Hash: []byte(next),
					CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}, nil, false); err != nil {
					Die(err)
				}
				ack.Rot(cur, next, units())
				cur = next
			}
		}()
	}
	wg.Wait()
}

// Check fails t unless every acknowledged single use is still recorded and every acknowledged
// rotation is in s: the old token rotated into the new one, and the new one present.
func Check(t *testing.T, s Writes, acks *Acks) {
	t.Helper()
	now := time.Now()
	for _, key := range acks.Uses {
		if err := s.UseOnce(t.Context(), key, now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
			t.Fatalf("acknowledged single use %s lost after kill -9 (UseOnce: %v)", key, err)
		}
	}
	for _, r := range acks.Rots {
		old, _, err := s.GetRefreshToken(t.Context(), []byte(r[0]))
		if err != nil || old.RotatedAt == nil || string(old.SuccessorHash) != r[1] {
			t.Fatalf("acknowledged rotation %s>%s lost after kill -9: %+v, %v", r[0], r[1], old, err)
		}
		if _, _, err := s.GetRefreshToken(t.Context(), []byte(r[1])); err != nil {
			t.Fatalf("acknowledged successor %s lost after kill -9: %v", r[1], err)
		}
	}
}
