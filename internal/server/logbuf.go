package server

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Log buffering. Every request writes one access-log line; written straight to a file or to stderr
// that is one write syscall per request, which on loopback costs a gateway-proxied request about
// a fifth of its throughput (docs/BENCHMARKS.md "Gateway"). NewLogger therefore gives writers that
// are files (stderr, a log file) a lineBuffer: lines are collected in memory and written out
// together at most logFlushInterval after the first of them, when the buffer is full, and when
// the server closes (Serve's graceful shutdown and Close both flush, so no line is lost on a
// graceful stop). A crash (kill -9, fatal runtime error) can lose the last ~100 ms of lines.
// In-memory writers (tests, bytes.Buffer) are not buffered: nothing to gain, and tests read them
// right after a request.
const (
	logFlushInterval = 100 * time.Millisecond
	logBufferSize    = 32 << 10
)

// lineBuffer is an io.Writer, safe for concurrent use, that batches whole lines (slog handlers
// write one complete record per Write) and never splits one Write across two flushes.
type lineBuffer struct {
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	armed    bool // a flush timer is pending
	closed   bool // after close, writes go straight through
	interval time.Duration
}

func newLineBuffer(w io.Writer, interval time.Duration) *lineBuffer {
	return &lineBuffer{w: w, buf: make([]byte, 0, logBufferSize), interval: interval}
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > cap(b.buf) {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(b.buf) {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	if !b.armed {
		b.armed = true
		time.AfterFunc(b.interval, b.timedFlush)
	}
	return len(p), nil
}

func (b *lineBuffer) timedFlush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = false
	b.flushLocked()
}

// flushLocked writes out what is buffered. On a write error the lines are dropped (a log that
// cannot be written must not grow without bound or block requests) and the error returned.
func (b *lineBuffer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Flush writes out what is buffered now.
func (b *lineBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// Close flushes and switches to writing straight through, so lines logged after the server has
// stopped (by the CLI, say) are not held back. The underlying writer stays open (it is the
// caller's). Close may be called more than once.
func (b *lineBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.flushLocked()
}

// logHandler is the slog handler NewLogger returns: its JSON handler, the writer behind it (safe
// for concurrent use: a lineBuffer for files, a lockedWriter otherwise), the buffer to flush when
// the server closes (closeLog; nil when not buffered), and whether it is the plain handler without
// attributes or groups added, whose lines accessLog may encode itself.
type logHandler struct {
	slog.Handler
	out   io.Writer
	lb    *lineBuffer
	plain bool
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{Handler: h.Handler.WithAttrs(as), out: h.out, lb: h.lb}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{Handler: h.Handler.WithGroup(name), out: h.out, lb: h.lb}
}

// lockedWriter serialises Writes to a writer that may not be safe for concurrent use (a
// bytes.Buffer in tests): the JSON handler and the access log both write to it, each under its own
// lock otherwise.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// bufferFor returns the writer NewLogger's handler should write to — safe for concurrent use, as
// the access log writes to it beside the JSON handler — and the lineBuffer when it is one.
func bufferFor(w io.Writer) (io.Writer, *lineBuffer) {
	if _, ok := w.(*os.File); !ok {
		return &lockedWriter{w: w}, nil
	}
	lb := newLineBuffer(w, logFlushInterval)
	return lb, lb
}

// closeLog flushes a logger made by NewLogger and makes it write straight through from now on. It
// does nothing for other loggers.
func closeLog(l *slog.Logger) {
	if l == nil {
		return
	}
	if h, ok := l.Handler().(*logHandler); ok && h.lb != nil {
		h.lb.Close()
	}
}
