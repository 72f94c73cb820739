package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// stageHistograms are the histograms a replica exports that take a round trip apart (see
// internal/dialect/orderpay/metrics.go), by series name and the label that tells them apart.
var stageHistograms = []struct{ name, label string }{
	{"posgate_orderpay_stage_seconds", "stage"},
	{"posgate_outbox_delivery_latency_seconds", "dialect"},
}

// reportStages prints, for each replica, the p50 and p99 of each stage histogram with a count,
// read from its /metrics (bucket bounds, interpolated linearly within a bucket: a coarse
// figure; warm-up included).
func (c *cluster) reportStages(ctx context.Context) {
	for i, u := range c.urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := c.client.Do(req)
		if err != nil {
			fmt.Printf("posgate %d: /metrics: %v\n", i, err)
			continue
		}
		hs := parseHistograms(resp.Body)
		resp.Body.Close()
		keys := make([]string, 0, len(hs))
		for k := range hs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			h := hs[k]
			if h.count() == 0 {
				continue
			}
			fmt.Printf("posgate %d: %-40s n=%d p50≈%s p99≈%s\n", i, k, h.count(), ms(h.quantile(.5)), ms(h.quantile(.99)))
		}
	}
}

func ms(s float64) string {
	if math.IsInf(s, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(s*1000, 'f', 2, 64) + "ms"
}

// histogram is the cumulative buckets of one series, by upper bound.
type histogram struct{ le, n []float64 }

func (h *histogram) count() int64 {
	if len(h.n) == 0 {
		return 0
	}
	return int64(h.n[len(h.n)-1])
}

func (h *histogram) quantile(q float64) float64 {
	total := h.n[len(h.n)-1]
	rank := q * total
	lo, prev := 0.0, 0.0
	for i, n := range h.n {
		if n >= rank {
			if math.IsInf(h.le[i], 1) || n == prev {
				return h.le[i]
			}
			return lo + (h.le[i]-lo)*(rank-prev)/(n-prev)
		}
		lo, prev = h.le[i], n
	}
	return math.Inf(1)
}

// parseHistograms reads the stageHistograms' buckets from a Prometheus text exposition.
func parseHistograms(r io.Reader) map[string]*histogram {
	out := map[string]*histogram{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, sh := range stageHistograms {
			rest, ok := strings.CutPrefix(line, sh.name+"_bucket{")
			if !ok {
				continue
			}
			labels, value, ok := strings.Cut(rest, "} ")
			if !ok {
				continue
			}
			var name, le string
			for _, l := range strings.Split(labels, ",") {
				k, v, _ := strings.Cut(l, "=")
				v = strings.Trim(v, `"`)
				switch k {
				case sh.label:
					name = v
				case "le":
					le = v
				}
			}
			bound, err1 := strconv.ParseFloat(le, 64)
			n, err2 := strconv.ParseFloat(value, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			key := strings.TrimPrefix(strings.TrimSuffix(sh.name, "_seconds"), "posgate_") + "/" + name
			h := out[key]
			if h == nil {
				h = &histogram{}
				out[key] = h
			}
			h.le, h.n = append(h.le, bound), append(h.n, n)
		}
	}
	return out
}
