package server

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/jsonx"
)

// The access log: one line per request, written by observe. Through slog a line allocates (ten
// attributes overflow the Record's inline storage, and slog's JSON handler encodes a float64 with
// encoding/json, reflection and all) — a good part of what the server adds to a proxied request
// (docs/BENCHMARKS.md "Gateway"). When the logger is NewLogger's own, the line is
// therefore encoded here, byte for byte as its JSON handler writes it (TestAccessLineMatchesSlog,
// FuzzAccessLine), and handed to the same writer; any other logger gets the same attributes
// through slog.

// accessEntry is what one access-log line says, field by field in the order they are written.
// Never a header, a body or the query string.
type accessEntry struct {
	id       string
	method   string // capped (safeMethod)
	route    string
	path     string // escaped path, capped (logPath)
	status   int
	bytes    int64
	elapsed  time.Duration
	addr     string
	proto    string
	hijacked bool
}

// durationMS is the line's duration_ms: milliseconds with microsecond resolution.
func (e *accessEntry) durationMS() float64 { return float64(e.elapsed.Microseconds()) / 1000 }

// attrs is the entry as slog attributes (the path for loggers that are not NewLogger's).
func (e *accessEntry) attrs() []slog.Attr {
	return []slog.Attr{
		slog.String("request_id", e.id),
		slog.String("method", e.method),
		slog.String("route", e.route),
		slog.String("path", e.path),
		slog.Int("status", e.status),
		slog.Int64("bytes", e.bytes),
		slog.Float64("duration_ms", e.durationMS()),
		slog.String("addr", e.addr),
		slog.String("proto", e.proto),
		slog.Bool("hijacked", e.hijacked),
	}
}

// accessLog writes access-log lines to log.
type accessLog struct {
	log *slog.Logger
	// direct is log's handler when it is NewLogger's and carries no attributes or groups of its
	// own (WithAttrs/WithGroup): then lines are encoded by appendAccessLine and written to its
	// writer, which is safe for concurrent use and takes each line in one Write.
	direct *logHandler
}

func newAccessLog(log *slog.Logger) accessLog {
	al := accessLog{log: log}
	if h, ok := log.Handler().(*logHandler); ok && h.plain {
		al.direct = h
	}
	return al
}

const accessMsg = "request"

// write logs e at level; t is the moment the line is about (the request's end).
func (al accessLog) write(ctx context.Context, level slog.Level, t time.Time, e *accessEntry) {
	if al.direct == nil {
		al.log.LogAttrs(ctx, level, accessMsg, e.attrs()...)
		return
	}
	if !al.direct.Enabled(ctx, level) {
		return
	}
	bp := lineBufs.Get().(*[]byte)
	b := appendAccessLine((*bp)[:0], t, level, e)
	_, _ = al.direct.out.Write(b) // as slog.Logger does, a failed log write is not the request's problem
	if cap(b) <= maxPooledLine {
		*bp = b
		lineBufs.Put(bp)
	}
}

const maxPooledLine = 4 << 10

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendAccessLine appends the line slog's JSONHandler (no options but the level) writes for
// Logger.LogAttrs(ctx, level, "request", e.attrs()...) at time t, newline included.
func appendAccessLine(b []byte, t time.Time, level slog.Level, e *accessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = t.Round(0).AppendFormat(b, time.RFC3339Nano) // what slog does with Record.Time
	b = append(b, `","level":`...)
	b = jsonx.AppendLogString(b, level.String())
	b = append(b, `,"msg":"`+accessMsg+`","request_id":`...)
	b = jsonx.AppendLogString(b, e.id)
	b = append(b, `,"method":`...)
	b = jsonx.AppendLogString(b, e.method)
	b = append(b, `,"route":`...)
	b = jsonx.AppendLogString(b, e.route)
	b = append(b, `,"path":`...)
	b = jsonx.AppendLogString(b, e.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendJSONFloat(b, e.durationMS())
	b = append(b, `,"addr":`...)
	b = jsonx.AppendLogString(b, e.addr)
	b = append(b, `,"proto":`...)
	b = jsonx.AppendLogString(b, e.proto)
	b = append(b, `,"hijacked":`...)
	b = strconv.AppendBool(b, e.hijacked)
	return append(b, "}\n"...)
}

// appendJSONFloat appends f as encoding/json writes a float64 (which is what slog's JSON handler
// calls for one): the shortest representation, in exponent form only below 1e-6 or from 1e21,
// with the exponent's leading zero dropped. Durations are finite; NaN and ±Inf, which
// encoding/json refuses (and slog then logs as an error string), never reach here.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
