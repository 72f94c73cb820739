package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target is one endpoint under load: newRequest builds a fresh request each time (bodies are
// single-use) and check decides whether a response counts as a success.
type target struct {
	name       string
	newRequest func(worker int) (*http.Request, error)
	check      func(worker, status int, body []byte) error
	// measured, if set, is called when the measured phase starts; the function it returns is
	// called when it ends and gives the CPU time the phase cost.
	measured func() func() time.Duration
}

// errExhausted from newRequest ends that worker's run: the target has no more work (a pool of
// single-use tokens is empty). It is not a failure.
var errExhausted = errors.New("target exhausted")

// result is what one run measured.
type result struct {
	name        string
	concurrency int
	n           int           // successful requests
	failures    int           // requests that failed (transport error or check)
	firstErr    error         // the first failure, for the report
	elapsed     time.Duration // wall time of the measured phase
	latencies   []time.Duration
	warmN       int           // requests completed during the warm-up
	cpu         time.Duration // CPU of the measured phase (when the target measures it)
	fsyncs      int64         // fsync calls of warm-up and measured phase; -1 when not counted
	trips       int64         // PostgreSQL: messages the backends received (recvfrom calls); -1 when not counted
	commits     int64         // PostgreSQL: transactions committed in the benchmark's database; -1 when not counted
	pgCPU       time.Duration // PostgreSQL: CPU of the server's processes counted (warm-up and measured phase)
}

// perReq divides a count of warm-up and measured phase by their requests (-1 stays -1).
func (r *result) perReq(v int64) float64 {
	if v < 0 {
		return -1
	}
	return float64(v) / float64(max(r.n+r.warmN, 1))
}

func (r *result) fsyncPerReq() float64 { return r.perReq(r.fsyncs) }

func (r *result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r *result) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.latencies)-1))
	return r.latencies[i]
}

// run drives t with `concurrency` workers for at most d and at most maxCount requests, after a
// short warm-up that is not measured (connections opened, caches filled).
func run(ctx context.Context, client *http.Client, t target, concurrency int, d time.Duration, maxCount int64, warmup time.Duration) *result {
	once := func(worker int) (time.Duration, error) {
		req, err := t.newRequest(worker)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		el := time.Since(start)
		if err != nil {
			return 0, err
		}
		if err := t.check(worker, resp.StatusCode, body); err != nil {
			return 0, err
		}
		return el, nil
	}

	// Warm-up: every worker makes requests until warmup has passed.
	var wg sync.WaitGroup
	var warmN atomic.Int64
	warmEnd := time.Now().Add(warmup)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(warmEnd) && ctx.Err() == nil {
				_, err := once(w)
				if errors.Is(err, errExhausted) {
					return
				}
				if err == nil {
					warmN.Add(1)
				}
			}
		}()
	}
	wg.Wait()

	res := &result{name: t.name, concurrency: concurrency, warmN: int(warmN.Load()), fsyncs: -1, trips: -1, commits: -1}
	var stopCPU func() time.Duration
	if t.measured != nil {
		stopCPU = t.measured()
	}
	var issued atomic.Int64
	var mu sync.Mutex
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			fails := 0
			var firstErr error
			for time.Now().Before(deadline) && ctx.Err() == nil && issued.Add(1) <= maxCount {
				el, err := once(w)
				if errors.Is(err, errExhausted) || (err != nil && ctx.Err() != nil) {
					break // out of work, or the run was stopped: neither is a failure
				}
				if err != nil {
					fails++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, el)
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.failures += fails
			if res.firstErr == nil {
				res.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if stopCPU != nil {
		res.cpu = stopCPU()
	}
	res.n = len(res.latencies)
	sortDurations(res.latencies)
	return res
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}
