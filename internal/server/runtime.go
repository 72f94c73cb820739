package server

import (
	"os"
	"runtime/debug"

	"github.com/posgate/posgate/internal/config"
)

// TuneRuntime applies server.gc_percent and server.memory_limit to the Go garbage collector,
// unless the GOGC (GOMEMLIMIT) environment variable is set: an operator's runtime setting wins. It returns the percentage it set, or -1 when
// it left the runtime alone. `posgate serve` calls it once before New; a program that embeds a
// Server keeps its own settings by not calling it.
//
// Why posgate sets it at all: its live heap is small, so at Go's default (100) the heap target is
// its 4 MiB minimum and the collector runs every few MiB allocated — a noticeable share of a
// proxied request's CPU (docs/BENCHMARKS.md "Gateway"). At 400 the minimum target is 16 MiB and
// the collector runs several times less often.
//
// The same factor multiplies a websocket hub's live memory (every idle socket keeps its buffers
// and two goroutine stacks): a large hub needs server.memory_limit so the heap stops growing
// at the limit instead of at five times what is live.
func TuneRuntime(cfg *config.Config, getenv func(string) string) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	if cfg != nil && cfg.Server.MemoryLimit > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.Server.MemoryLimit)
	}
	if getenv("GOGC") != "" || cfg == nil || cfg.Server.GCPercent <= 0 {
		return -1
	}
	debug.SetGCPercent(cfg.Server.GCPercent)
	return cfg.Server.GCPercent
}
