package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Dialect is one kind of round trip through posgate: a caller's request is stored, pushed over
// the hub to a peer (a simulated POS), and the peer's answer comes back to the caller. A dialect
// sets up what it needs (a posgate, credentials, a connected peer) in Start and sends one request
// per Do; Do returns when the caller has the answer (or an error). Do is called concurrently.
type Dialect interface {
	Start(ctx context.Context, o RoundTripOptions) error
	Do(ctx context.Context, i int64) error
	Stop()
}

// RoundTripOptions are the harness flags a Dialect may use.
type RoundTripOptions struct {
	URL   string // an already running posgate (loopback), or "" for the dialect to start one
	Store string // sqlite | postgres, when the dialect starts posgate itself
	DSN   string // postgres DSN
	Args  map[string]string
}

// dialects are the round trips this program knows; a dialect adds itself in its own file's
// init-free constructor here.
var dialects = map[string]func() Dialect{
	"echo":     func() Dialect { return &echoDialect{} },
	"orderpay": func() Dialect { return &orderpayDialect{} },
	"doshii":   func() Dialect { return &doshiiDialect{} },
	"pgrelay":  func() Dialect { return &pgrelayDialect{} },
}

func runRoundTrip(args []string) error {
	fs := flag.NewFlagSet("roundtrip", flag.ContinueOnError)
	var o RoundTripOptions
	name := fs.String("dialect", "echo", "the round trip to drive: "+strings.Join(dialectNames(), ", "))
	rate := fs.Int("rate", 1000, "requests per second, paced (open loop: a slow answer does not slow the pace)")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before")
	inflight := fs.Int("max-inflight", 2000, "requests outstanding at most; beyond it the run fails (the target cannot keep the pace)")
	baseline := fs.Bool("baseline", true, "also run the bare coder/websocket echo at the same rate, for the ratio")
	floor := fs.Bool("floor", false, "with -store postgres, also run the pgrelay floor of the same shape (doshii: one way) in the same run, for a second ratio")
	timeline := fs.Duration("timeline", 0, "also print p50/p99/max per window of this length (shows whether a tail is bursts or queueing)")
	var kv string
	fs.StringVar(&o.URL, "url", "", "an already running posgate on loopback (default: the dialect starts one)")
	fs.StringVar(&o.Store, "store", "sqlite", "sqlite or postgres, for a posgate the dialect starts")
	fs.StringVar(&o.DSN, "dsn", "", "PostgreSQL DSN for -store postgres")
	fs.StringVar(&kv, "args", "", "dialect-specific settings, k=v,k=v")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate < 1 || *rate > 100000 || *duration <= 0 || *duration > 10*time.Minute || *warmup < 0 || *inflight < 1 {
		return errors.New("-rate in [1, 100000], -duration in (0, 10m], -warmup ≥ 0, -max-inflight ≥ 1")
	}
	o.Args = map[string]string{}
	for _, p := range strings.Split(kv, ",") {
		if k, v, ok := strings.Cut(p, "="); ok {
			o.Args[k] = v
		}
	}
	mk, ok := dialects[*name]
	if !ok {
		return fmt.Errorf("-dialect %q: one of %s", *name, strings.Join(dialectNames(), ", "))
	}
	ctx := context.Background()
	type run struct {
		label string
		d     Dialect
	}
	runs := []run{{*name, mk()}}
	if *floor {
		if o.Store != "postgres" || *name == "pgrelay" {
			return errors.New("-floor is for a posgate dialect with -store postgres")
		}
		runs = append(runs, run{"pg floor", &pgrelayDialect{oneway: *name == "doshii"}})
	}
	if *baseline {
		runs = append(runs, run{"bare echo", &bareDialect{}})
	}
	sums := map[string]summary{}
	for _, r := range runs {
		if err := r.d.Start(ctx, o); err != nil {
			return fmt.Errorf("%s: %w", r.label, err)
		}
		samples, err := paced(ctx, r.d, *rate, *warmup, *duration, *inflight)
		r.d.Stop()
		if err != nil {
			return fmt.Errorf("%s: %w", r.label, err)
		}
		if *timeline > 0 {
			printTimeline(r.label, samples, *timeline)
		}
		lat := make([]time.Duration, len(samples))
		for i, x := range samples {
			lat[i] = x.took
		}
		s := summarise(lat)
		sums[r.label] = s
		fmt.Printf("%-10s at %d/s for %s: %s\n", r.label, *rate, *duration, s)
	}
	for _, base := range []string{"pg floor", "bare echo"} {
		if b, ok := sums[base]; ok {
			s := sums[*name]
			fmt.Printf("ratio %s / %s: p50 %.1f, p99 %.1f\n", *name, base,
				float64(s.p50)/float64(b.p50), float64(s.p99)/float64(b.p99))
		}
	}
	return nil
}

func dialectNames() []string {
	var out []string
	for k := range dialects {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sample is one measured request: when it was due, from the start of the measured part, and
// how long it took.
type sample struct{ at, took time.Duration }

// paced issues requests at rate for warmup+duration and returns the latencies of the measured
// part. Latency is measured from the request's scheduled time, so a stall shows as latency
// instead of silently lowering the rate.
func paced(ctx context.Context, d Dialect, rate int, warmup, duration time.Duration, maxInflight int) ([]sample, error) {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	var mu sync.Mutex
	lat := make([]sample, 0, int(duration.Seconds()*float64(rate))+16)
	var inflight atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	var i int64
	for {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if err, _ := firstErr.Load().(error); err != nil {
			wg.Wait()
			return nil, err
		}
		if inflight.Add(1) > int64(maxInflight) {
			wg.Wait()
			return nil, fmt.Errorf("more than %d requests outstanding: the target does not keep a pace of %d/s", maxInflight, rate)
		}
		wg.Add(1)
		go func(n int64, at time.Time) {
			defer wg.Done()
			defer inflight.Add(-1)
			err := d.Do(ctx, n)
			took := time.Since(at)
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("request %d: %w", n, err))
				return
			}
			if !at.Before(measureFrom) {
				mu.Lock()
				lat = append(lat, sample{at: at.Sub(measureFrom), took: took})
				mu.Unlock()
			}
		}(i, at)
		i++
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return lat, nil
}
