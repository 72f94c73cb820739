package main

import (
	"context"
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
	newRequest func() (*http.Request, error)
	check      func(status int, body []byte) error
}

// result is what one run measured.
type result struct {
	name        string
	concurrency int
	n           int           // successful requests
	failures    int           // requests that failed (transport error or check)
	firstErr    error         // the first failure, for the report
	elapsed     time.Duration // wall time of the measured phase
	latencies   []time.Duration
}

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
	once := func() (time.Duration, error) {
		req, err := t.newRequest()
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
		if err := t.check(resp.StatusCode, body); err != nil {
			return 0, err
		}
		return el, nil
	}

	// Warm-up: every worker makes requests until warmup has passed.
	var wg sync.WaitGroup
	warmEnd := time.Now().Add(warmup)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(warmEnd) && ctx.Err() == nil {
				_, _ = once()
			}
		}()
	}
	wg.Wait()

	res := &result{name: t.name, concurrency: concurrency}
	var issued atomic.Int64
	var mu sync.Mutex
	deadline := time.Now().Add(d)
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			fails := 0
			var firstErr error
			for time.Now().Before(deadline) && ctx.Err() == nil && issued.Add(1) <= maxCount {
				el, err := once()
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
