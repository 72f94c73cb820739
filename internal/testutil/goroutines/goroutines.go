// Package goroutines checks that an operation starts no goroutine of its own, by the runtime's
// count of goroutines created.
package goroutines

import (
	"runtime/metrics"
	"testing"
)

// Created is the process's count of goroutines created since it started.
func Created() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// tries is how many batches StartNone runs before it fails.
const tries = 3

// StartNone runs op n times in a batch and fails t unless some batch, of up to three, started at
// most n/5 goroutines. The count is the process's: the runtime (the collector's workers) and
// what other tests left running may start a few meanwhile, so a batch may be tried again; an
// operation that starts a goroutine each time fails every batch. op gets the index of its call,
// counted across batches.
func StartNone(t testing.TB, what string, n int, op func(i int)) {
	t.Helper()
	var got []uint64
	for try := range tries {
		before := Created()
		for i := range n {
			op(try*n + i)
		}
		got = append(got, Created()-before)
		if got[try] <= uint64(n/5) {
			return
		}
	}
	t.Fatalf("%d %s started %v goroutines in %d batches", n, what, got, tries)
}
