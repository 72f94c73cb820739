package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// slogLine is what slog's JSONHandler (as NewLogger configures it) writes for e at t.
func slogLine(t *testing.T, at time.Time, level slog.Level, e *accessEntry) string {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	r := slog.NewRecord(at, level, accessMsg, 0)
	r.AddAttrs(e.attrs()...)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func checkAccessLine(t *testing.T, at time.Time, level slog.Level, e *accessEntry) {
	t.Helper()
	want := slogLine(t, at, level, e)
	if got := string(appendAccessLine(nil, at, level, e)); got != want {
		t.Fatalf("access line differs from slog's:\n got %s\nwant %s", got, want)
	}
}

// The hand-encoded line is the line slog writes, for ordinary and hostile field values alike.
func TestAccessLineMatchesSlog(t *testing.T) {
	at := time.Date(2026, 12, 4, 3, 12, 24, 123456789, time.UTC)
	local := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", -(3*3600+30*60)))
	base := accessEntry{id: "0123456789abcdef", method: "GET", route: "GET /bench/", path: "/bench/orders/42",
		status: 200, bytes: 123, elapsed: 1234567 * time.Nanosecond, addr: "127.0.0.1", proto: "HTTP/1.1"}
	cases := []func(e *accessEntry){
		func(e *accessEntry) {},
		func(e *accessEntry) { e.elapsed = 0 },
		func(e *accessEntry) { e.elapsed = time.Microsecond },
		func(e *accessEntry) { e.elapsed = 999 * time.Nanosecond },
		func(e *accessEntry) { e.elapsed = math.MaxInt64 },
		func(e *accessEntry) { e.elapsed = 90 * time.Minute },
		func(e *accessEntry) { e.route, e.status, e.bytes = "", 404, 0 },
		func(e *accessEntry) { e.hijacked, e.status = true, 101 },
		func(e *accessEntry) { e.path = "/a\"b\\c\x00\x1f\b\f\t\n\r<>&\u2028\u2029\xff€" },
		func(e *accessEntry) { e.method = "M\"\x7f"; e.addr = "::1"; e.proto = "HTTP/2.0" },
		func(e *accessEntry) { e.bytes = -1; e.status = 0 },
	}
	for _, mod := range cases {
		e := base
		mod(&e)
		for _, ts := range []time.Time{at, local, time.Now(), at.Add(500 * time.Nanosecond)} {
			for _, lv := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
				t.Run("", func(t *testing.T) {
					checkAccessLine(t, ts, lv, &e)
				})
			}
		}
	}
}

func FuzzAccessLine(f *testing.F) {
	f.Add("0123456789abcdef", "GET", "GET /bench/", "/bench/orders/42", 200, int64(123), int64(1234567), "127.0.0.1", "HTTP/1.1", false, int64(1764817944123456789))
	f.Add("", "", "", "", 0, int64(0), int64(0), "", "", true, int64(0))
	f.Add("\x00", "\xff", "\u2028", "<&>", 599, int64(-1), int64(-5), "\b\f", "\"\\", true, int64(-62135596800))
	f.Fuzz(func(t *testing.T, id, method, route, path string, status int, n, elapsed int64, addr, proto string, hijacked bool, unixNano int64) {
		at := time.Unix(0, unixNano)
		if y := at.Year(); y < 0 || y >= 10000 {
			return // slog logs an error instead of the time; a clock never says this
		}
		e := accessEntry{id: id, method: method, route: route, path: path, status: status, bytes: n,
			elapsed: time.Duration(elapsed), addr: addr, proto: proto, hijacked: hijacked}
		checkAccessLine(t, at, slog.LevelInfo, &e)
	})
}

// observe writes its line the fast way for NewLogger's logger, through slog for any other (and for
// a NewLogger logger with attributes added) — the same line either way.
func TestAccessLogPaths(t *testing.T) {
	var direct, viaSlog bytes.Buffer
	fast := newAccessLog(NewLogger(&direct, "info"))
	if fast.direct == nil {
		t.Fatal("NewLogger's logger not written directly")
	}
	plain := newAccessLog(slog.New(slog.NewJSONHandler(&viaSlog, nil)))
	if plain.direct != nil {
		t.Fatal("a foreign logger written directly")
	}
	if with := newAccessLog(NewLogger(io.Discard, "info").With("k", "v")); with.direct != nil {
		t.Fatal("a logger with attributes written directly: its attributes would be lost")
	}
	e := accessEntry{id: "abc", method: "POST", route: "POST /x", path: "/x", status: 503, bytes: 9, elapsed: 3 * time.Millisecond, addr: "10.0.0.1", proto: "HTTP/1.1"}
	at := time.Now()
	fast.write(context.Background(), slog.LevelWarn, at, &e)
	plain.write(context.Background(), slog.LevelWarn, at, &e)
	// slog stamps its own time: compare from the level on.
	_, d, _ := strings.Cut(direct.String(), `"level"`)
	_, v, _ := strings.Cut(viaSlog.String(), `"level"`)
	if d != v || !strings.Contains(d, `"msg":"request"`) {
		t.Fatalf("direct %q\nslog   %q", direct.String(), viaSlog.String())
	}
	// The level still applies.
	direct.Reset()
	newAccessLog(NewLogger(&direct, "warn")).write(context.Background(), slog.LevelInfo, at, &e)
	if direct.Len() != 0 {
		t.Fatalf("info line written at level warn: %q", direct.String())
	}
}

// BenchmarkAccessLog compares writing one access-log line through slog with the direct encoder,
// both into NewLogger's buffered file writer (to /dev/null).
func BenchmarkAccessLog(b *testing.B) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	log := NewLogger(devnull, "info")
	defer closeLog(log)
	e := accessEntry{id: "0123456789abcdef", method: "GET", route: "GET /bench/", path: "/bench/orders/42",
		status: 200, bytes: 123, elapsed: 1234567 * time.Nanosecond, addr: "127.0.0.1", proto: "HTTP/1.1"}
	ctx := context.Background()
	b.Run("slog", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			log.LogAttrs(ctx, slog.LevelInfo, accessMsg, e.attrs()...)
		}
	})
	b.Run("direct", func(b *testing.B) {
		al := newAccessLog(log)
		b.ReportAllocs()
		for b.Loop() {
			al.write(ctx, slog.LevelInfo, time.Now(), &e)
		}
	})
}
