package server

import (
	"runtime/debug"
	"testing"

	"github.com/posgate/posgate/internal/config"
)

// gcPercent reads the collector's current target (SetGCPercent returns the previous one).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestTuneRuntime(t *testing.T) {
	before := gcPercent()
	t.Cleanup(func() { debug.SetGCPercent(before) })
	cfg := config.Default()
	cfg.Server.GCPercent = 321
	noEnv := func(string) string { return "" }
	if got := TuneRuntime(cfg, noEnv); got != 321 || gcPercent() != 321 {
		t.Fatalf("TuneRuntime = %d, runtime at %d; want 321", got, gcPercent())
	}
	// GOGC set by the operator wins: nothing changes.
	debug.SetGCPercent(150)
	gogc := func(k string) string {
		if k == "GOGC" {
			return "150"
		}
		return ""
	}
	if got := TuneRuntime(cfg, gogc); got != -1 || gcPercent() != 150 {
		t.Fatalf("with GOGC set: TuneRuntime = %d, runtime at %d; want -1 and 150 untouched", got, gcPercent())
	}
}

func TestTuneRuntimeMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	gcBefore := gcPercent()
	t.Cleanup(func() { debug.SetMemoryLimit(before); debug.SetGCPercent(gcBefore) })
	cfg := config.Default()
	cfg.Server.MemoryLimit = 1 << 30
	TuneRuntime(cfg, func(string) string { return "" })
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("memory limit %d, want 1 GiB", got)
	}
	// GOMEMLIMIT set by the operator wins.
	debug.SetMemoryLimit(2 << 30)
	TuneRuntime(cfg, func(k string) string {
		if k == "GOMEMLIMIT" {
			return "2GiB"
		}
		return ""
	})
	if got := debug.SetMemoryLimit(-1); got != 2<<30 {
		t.Fatalf("with GOMEMLIMIT set: memory limit %d, want 2 GiB untouched", got)
	}
}
