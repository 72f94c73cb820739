package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

type summary struct {
	n             int
	p50, p99, max time.Duration
}

func summarise(lat []time.Duration) summary {
	slices.Sort(lat)
	s := summary{n: len(lat), p50: percentile(lat, 50), p99: percentile(lat, 99)}
	if len(lat) > 0 {
		s.max = lat[len(lat)-1]
	}
	return s
}

// printTimeline prints a summary per window of the measured part: a tail made of a few bad
// windows is a stall (a checkpoint, a collection, a poll), one spread over all of them is queueing.
func printTimeline(label string, samples []sample, window time.Duration) {
	byWindow := map[int64][]time.Duration{}
	var last int64
	for _, x := range samples {
		w := int64(x.at / window)
		byWindow[w] = append(byWindow[w], x.took)
		last = max(last, w)
	}
	for w := int64(0); w <= last; w++ {
		fmt.Printf("  %-10s %6.1f s  %s\n", label, (time.Duration(w) * window).Seconds(), summarise(byWindow[w]))
	}
}

func (s summary) String() string {
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", s.n, us(s.p50), us(s.p99), us(s.max))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

// procStatus reads a field of /proc/<pid>/status in KiB ("VmRSS", "VmHWM").
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procCPU returns the user+system CPU time of pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name may hold spaces; fields resume after its closing parenthesis.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}
