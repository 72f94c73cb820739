package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func logFile(t *testing.T) (*os.File, func() string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, func() string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// Lines from many goroutines arrive whole, none lost, none interleaved, once the log is closed —
// with a buffer small enough that it fills and flushes many times meanwhile.
func TestLineBufferKeepsEveryLineWhole(t *testing.T) {
	f, read := logFile(t)
	lb := newLineBuffer(f, time.Hour) // only size and Close flush here
	lb.buf = make([]byte, 0, 1000)
	log := slog.New(slog.NewJSONHandler(lb, nil))
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				log.Info("request", slog.Int("w", w), slog.Int("i", i), slog.String("pad", strings.Repeat("x", i%300)))
			}
		})
	}
	wg.Wait()
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for line := range strings.Lines(read()) {
		var rec struct{ W, I int }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("broken line %q: %v", line, err)
		}
		seen[fmt.Sprint(rec.W, rec.I)] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct lines, want %d", len(seen), workers*each)
	}
}

// A line is written out by the timer without any further activity (not only at Close).
func TestLineBufferFlushesOnItsOwn(t *testing.T) {
	f, read := logFile(t)
	log := NewLogger(f, "info")
	log.Info("first")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(read(), `"msg":"first"`) {
		if time.Now().After(deadline) {
			t.Fatal("line not written within 10 s without a Close")
		}
		time.Sleep(10 * time.Millisecond) // polling for an effect, not waiting for an expiry
	}
	closeLog(log)
}

// closeLog writes out what is buffered at once; afterwards lines go straight through. Loggers
// derived with With share the buffer.
func TestCloseLogFlushesAndWritesThroughAfter(t *testing.T) {
	f, read := logFile(t)
	log := NewLogger(f, "info")
	h, ok := log.Handler().(*logHandler)
	if !ok || h.lb == nil {
		t.Fatalf("a file logger is not buffered: %T", log.Handler())
	}
	lb := h.lb
	lb.interval = time.Hour // the timer must not be what writes the line
	log.With("k", "v").Info("before close")
	if strings.Contains(read(), "before close") {
		t.Fatal("line written before any flush: not buffered")
	}
	closeLog(log)
	if got := read(); !strings.Contains(got, `"msg":"before close","k":"v"`) {
		t.Fatalf("after close: %q", got)
	}
	log.Warn("after close")
	if !strings.Contains(read(), "after close") {
		t.Fatal("line after close held back")
	}
	closeLog(log) // twice is fine
}

// In-memory writers are not buffered: tests read them right after a request.
func TestNewLoggerDoesNotBufferMemoryWriters(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "info")
	log.Info("now")
	if !strings.Contains(buf.String(), "now") {
		t.Fatal("memory writer buffered")
	}
}

// Graceful shutdown loses no line: the access-log line of a request served just before the stop
// is in the file when Serve returns, although the buffer's timer would not have fired for an hour.
func TestServeFlushesTheLogOnShutdown(t *testing.T) {
	f, read := logFile(t)
	lb := newLineBuffer(f, time.Hour)
	log := slog.New(&logHandler{Handler: slog.NewJSONHandler(lb, nil), out: lb, lb: lb, plain: true})
	srv, err := New(context.Background(), Options{Config: testConfig(t, t.TempDir()), Log: log, Out: &bytes.Buffer{},
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	resp, err := http.Get(srv.HTTPURL() + "/healthz?token=not-logged")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get(RequestIDHeader)
	if strings.Contains(read(), id) {
		t.Fatal("access-log line written before shutdown: not buffered")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	got := read()
	if !strings.Contains(got, `"request_id":"`+id+`"`) || !strings.Contains(got, `"path":"/healthz"`) ||
		!strings.Contains(got, "posgate shutting down") {
		t.Fatalf("lines missing after graceful shutdown:\n%s", got)
	}
	if strings.Contains(got, "not-logged") {
		t.Fatal("query string logged")
	}
}

func TestRequestIDs(t *testing.T) {
	seen := make(map[string]bool, 100000)
	for range 100000 {
		id := newRequestID()
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not 16 lowercase hex characters", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
	// Consecutive ids do not look consecutive (they would reveal request counts at a glance).
	a, b := newRequestID(), newRequestID()
	if a[:12] == b[:12] {
		t.Errorf("consecutive ids %s, %s share a prefix", a, b)
	}
}
