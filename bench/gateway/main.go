// Command gateway measures what the posgate gateway costs: the same load, in the same run, through
// (a) a complete posgate (every module, SQLite store, access log, metrics; the runtime tuned as
// `posgate serve` tunes it) with a route that accepts any posgate access token and requires a
// scope, and (b) a bare httputil.ReverseProxy on posgate's upstream transport behind an
// http.Server with posgate's default timeouts (-bare-plain: without either), to the same
// upstream. It reports requests/s and latency percentiles of both, their ratio, and the p99
// posgate adds. A third process, (m), serves the gateway module alone (same route, real keyring
// and verifier, no server middleware) on the baseline's http.Server, to tell the gateway's share
// from the server's.
//
//	go run ./bench/gateway                      # concurrency 8 and 64, 3 rounds of 5 s each
//	go run ./bench/gateway -c 1,8,64 -d 10s -rounds 5
//
// Everything runs on loopback in separate processes (this binary re-executes itself for the
// upstream, the bare proxy and posgate), so the load generator, the proxies and the upstream
// share the machine the same way in both cases. Rounds alternate a/b and b/a so that drift in the
// machine's load affects both; the report uses the median round.
package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	role := flag.String("role", "", "internal: run as upstream | bare | posgate")
	upstream := flag.String("upstream", "", "internal: upstream URL")
	key := flag.String("key", "", "internal: identity signing secret (base64)")
	dataDir := flag.String("data-dir", "", "internal: posgate data dir")
	logLevel := flag.String("log-level", "info", "posgate's log level during the run (its access log is written to a file)")
	conc := flag.String("c", "8,64", "concurrency levels, comma-separated")
	dur := flag.Duration("d", 5*time.Second, "duration of each measured run")
	warm := flag.Duration("warmup", time.Second, "unmeasured warm-up before each run")
	rounds := flag.Int("rounds", 3, "rounds per concurrency level (a and b each once per round)")
	maxReq := flag.Int64("n", 5_000_000, "at most this many requests per run")
	barePlain := flag.Bool("bare-plain", false, "baseline without posgate's server timeouts and upstream transport settings (see runBare)")
	flag.Parse()

	var err error
	if *role != "" {
		defer startProfile(*role)()
	}
	switch *role {
	case "upstream":
		err = runUpstream(*key)
	case "bare":
		err = runBare(*upstream, *barePlain)
	case "posgate":
		err = runPosgate(*upstream, *key, *dataDir, *logLevel)
	case "module":
		err = runModule(*upstream, *key, *dataDir)
	case "":
		err = bench(*conc, *dur, *warm, *rounds, *maxReq, *logLevel, *barePlain)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(1)
	}
}

// child is a role process; it prints "LISTEN <url>" once ready and exits when its stdin closes.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
	token string // for the module role: a token its own keyring issued
}

func startChild(extraEnv []string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%v: no LISTEN line: %v", args, err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTEN ")
	u, token, _ := strings.Cut(rest, " ")
	if !ok {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%v: unexpected %q", args, line)
	}
	if pu, err := url.Parse(u); err != nil || pu.Hostname() != "127.0.0.1" {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%v: %q is not a loopback URL", args, u)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return &child{cmd: cmd, stdin: stdin, url: u, token: token}, nil
}

func (c *child) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// untilStdinCloses blocks until the parent goes away (or an interrupt).
func untilStdinCloses() {
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	select {
	case <-done:
	case <-sig:
	}
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func bench(concList string, d, warm time.Duration, rounds int, maxReq int64, logLevel string, barePlain bool) error {
	var levels []int
	for _, s := range strings.Split(concList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			return fmt.Errorf("-c: %q is not a concurrency between 1 and 1024", s)
		}
		levels = append(levels, n)
	}
	if d <= 0 || d > 10*time.Minute || rounds < 1 || rounds > 20 {
		return errors.New("-d must be in (0, 10m] and -rounds in [1, 20]")
	}
	tmp, err := os.MkdirTemp("", "posgate-bench-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	key := randomSecret()
	adminToken := "pg_at_" + strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(randomSecret()))[:43], "=")

	up, err := startChild(nil, "-role", "upstream", "-key", key)
	if err != nil {
		return err
	}
	defer up.stop()
	bare, err := startChild(nil, "-role", "bare", "-upstream", up.url, "-bare-plain="+strconv.FormatBool(barePlain))
	if err != nil {
		return err
	}
	defer bare.stop()
	pg, err := startChild([]string{"POSGATE_ADMIN_TOKEN=" + adminToken, "POSGATE_MASTER_KEY=" + randomSecret()},
		"-role", "posgate", "-upstream", up.url, "-key", key, "-data-dir", filepath.Join(tmp, "data"), "-log-level", logLevel)
	if err != nil {
		return err
	}
	defer pg.stop()
	mod, err := startChild([]string{"POSGATE_MASTER_KEY=" + randomSecret()},
		"-role", "module", "-upstream", up.url, "-key", key, "-data-dir", filepath.Join(tmp, "module"))
	if err != nil {
		return err
	}
	defer mod.stop()

	tok, err := getToken(pg.url, adminToken)
	if err != nil {
		return err
	}
	if err := smoke(pg.url, bare.url, tok); err != nil {
		return err
	}
	if err := smoke(mod.url, bare.url, mod.token); err != nil {
		return fmt.Errorf("module: %w", err)
	}

	baseline := "same server timeouts and upstream transport as posgate"
	if barePlain {
		baseline = "plain (no server timeouts, default transport)"
	}
	fmt.Printf("# gateway benchmark: %s, %d rounds of %s per level, warm-up %s, posgate log level %s, bare proxy: %s\n\n",
		time.Now().UTC().Format(time.RFC3339), rounds, d, warm, logLevel, baseline)
	fmt.Println("| concurrency | posgate req/s | bare req/s | **throughput ratio** | posgate p50 / p99 | bare p50 / p99 | **added p99** | gateway-module ratio | proxy CPU/req posgate / module / bare | proxy read+write syscalls/req posgate / module / bare | CPU-bound ratio |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	pass := true
	type target struct {
		name, url, tok string
		pid            int
	}
	targets := []target{{"a", pg.url, tok, pg.cmd.Process.Pid}, {"b", bare.url, tok, bare.cmd.Process.Pid}, {"m", mod.url, mod.token, mod.cmd.Process.Pid}}
	for _, c := range levels {
		runs := map[string][]*result{}
		for r := 0; r < rounds; r++ {
			// Rotate the order every round so drift in the machine's load hits all alike.
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				res, err := load(t.url+"/bench/orders/42?expand=lines", t.tok, c, d, warm, maxReq, t.pid, up.cmd.Process.Pid)
				if err != nil {
					return err
				}
				runs[t.name] = append(runs[t.name], res)
			}
		}
		as, bs, ms := runs["a"], runs["b"], runs["m"]
		a, b, m := median(as), median(bs), median(ms)
		ratio := a.rate() / b.rate()
		added := a.quantile(0.99) - b.quantile(0.99)
		// The CPU-bound ratio is the throughput ratio the whole setup (load generator, proxy,
		// upstream) would reach on this machine if it had it to itself: all CPU per request, bare
		// over posgate. Other work sharing the machine moves it much less than the wall-clock one.
		cpuRatio := float64(medianBy(bs, (*result).cpuPerReq)) / float64(medianBy(as, (*result).cpuPerReq))
		fmt.Printf("| %d | %.0f | %.0f | **%.2f** | %s / %s | %s / %s | **%s** | %.2f | %s / %s / %s | %.2f / %.2f / %.2f | %.2f |\n", c, a.rate(), b.rate(), ratio,
			fmtDur(a.quantile(0.5)), fmtDur(a.quantile(0.99)), fmtDur(b.quantile(0.5)), fmtDur(b.quantile(0.99)), fmtDur(added),
			m.rate()/b.rate(), fmtDur(medianBy(as, (*result).proxyPerReq)), fmtDur(medianBy(ms, (*result).proxyPerReq)),
			fmtDur(medianBy(bs, (*result).proxyPerReq)), medianBy(as, (*result).ioCallsPerReq), medianBy(ms, (*result).ioCallsPerReq),
			medianBy(bs, (*result).ioCallsPerReq), cpuRatio)
		var ratios []string
		for i := range as {
			ratios = append(ratios, fmt.Sprintf("%.2f", as[i].rate()/bs[i].rate()))
		}
		fmt.Fprintf(os.Stderr, "concurrency %d: per-round posgate/bare ratios %s\n", c, strings.Join(ratios, " "))
		for _, x := range []struct {
			name string
			rs   []*result
		}{{"posgate", as}, {"module", ms}, {"bare", bs}} {
			fmt.Fprintf(os.Stderr, "concurrency %d: %s CPU per request (median round): proxy %s, upstream %s, load generator %s\n", c, x.name,
				fmtDur(medianBy(x.rs, (*result).proxyPerReq)),
				fmtDur(medianBy(x.rs, perReq(func(r *result) time.Duration { return r.cpuUpstream }))),
				fmtDur(medianBy(x.rs, perReq(func(r *result) time.Duration { return r.cpuLoad }))))
		}
		if ratio < 0.9 || added > time.Millisecond {
			pass = false
		}
	}
	fmt.Println()
	if pass {
		fmt.Println("target met: throughput ratio ≥ 0.90 and added p99 ≤ 1 ms at every level")
	} else {
		fmt.Println("TARGET MISSED: throughput ratio ≥ 0.90 and added p99 ≤ 1 ms at every level")
	}
	return nil
}

// getToken creates a client through the admin API and gets a client_credentials token with the
// route's scope.
func getToken(base, adminToken string) (string, error) {
	body, _ := json.Marshal(map[string]any{"name": "bench", "grant_types": []string{"client_credentials"},
		"scopes": []string{"bench"}, "audiences": []string{"bench"}})
	req, _ := http.NewRequest("POST", base+"/admin/api/v1/clients", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	var created struct{ ClientID, ClientSecret string }
	if err := doJSON(req, &created, "client_id", "client_secret"); err != nil {
		return "", fmt.Errorf("creating a client: %w", err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"bench"}, "audience": {"bench"}}
	req, _ = http.NewRequest("POST", base+"/oauth/token", strings.NewReader(form.Encode()))
	req.SetBasicAuth(url.QueryEscape(created.ClientID), url.QueryEscape(created.ClientSecret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct{ AccessToken string }
	if err := doJSON(req, &tok, "access_token"); err != nil {
		return "", fmt.Errorf("getting a token: %w", err)
	}
	return tok.AccessToken, nil
}

// doJSON sends req and decodes a 2xx JSON answer, mapping the named snake_case fields onto the
// struct's fields in order.
func doJSON(req *http.Request, out any, fields ...string) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, data)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	vals := make([]string, len(fields))
	for i, f := range fields {
		s, _ := m[f].(string)
		if s == "" {
			return fmt.Errorf("%s %s: answer has no %q", req.Method, req.URL.Path, f)
		}
		vals[i] = s
	}
	switch o := out.(type) {
	case *struct{ ClientID, ClientSecret string }:
		o.ClientID, o.ClientSecret = vals[0], vals[1]
	case *struct{ AccessToken string }:
		o.AccessToken = vals[0]
	}
	return nil
}

// smoke checks both paths work before measuring: posgate forwards with a verifiable identity and
// refuses without a token; the bare proxy forwards.
func smoke(pgURL, bareURL, tok string) error {
	get := func(u, authz string) (int, string, error) {
		req, _ := http.NewRequest("GET", u, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if st, body, err := get(pgURL+"/bench/verify", "Bearer "+tok); err != nil || st != 200 || !strings.Contains(body, `"verified":true`) {
		return fmt.Errorf("posgate route: %d %s %v (is the gateway module wired into the server?)", st, body, err)
	}
	if st, _, err := get(pgURL+"/bench/x", ""); err != nil || st != 401 {
		return fmt.Errorf("posgate route without a token: %d %v, want 401", st, err)
	}
	if st, _, err := get(bareURL+"/bench/x", "Bearer "+tok); err != nil || st != 200 {
		return fmt.Errorf("bare proxy: %d %v", st, err)
	}
	return nil
}

type result struct {
	n         int64
	elapsed   time.Duration
	latencies []time.Duration
	// CPU time spent during the measured phase by the proxy under test, the upstream and the
	// load generator (this process).
	cpuProxy, cpuUpstream, cpuLoad time.Duration
	// ioCalls is the read/write system calls the proxy under test made during the measured phase.
	ioCalls int64
}

// cpuPerReq is the CPU time the whole setup spent per request.
func (r *result) cpuPerReq() time.Duration {
	return (r.cpuProxy + r.cpuUpstream + r.cpuLoad) / time.Duration(max(r.n, 1))
}

func (r *result) proxyPerReq() time.Duration { return r.cpuProxy / time.Duration(max(r.n, 1)) }

func (r *result) ioCallsPerReq() float64 { return float64(r.ioCalls) / float64(max(r.n, 1)) }

func (r *result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r *result) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(q*float64(len(r.latencies)-1))]
}

// medianBy is the median over rounds of one per-request figure.
func medianBy[T cmp.Ordered](rs []*result, f func(*result) T) T {
	v := make([]T, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// perReq turns a CPU total of a result into a per-request figure.
func perReq(total func(*result) time.Duration) func(*result) time.Duration {
	return func(r *result) time.Duration { return total(r) / time.Duration(max(r.n, 1)) }
}

func median(rs []*result) *result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b *result) int {
		switch {
		case a.rate() < b.rate():
			return -1
		case a.rate() > b.rate():
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// load drives GET u with the bearer token from c workers for d (after warm), bounded by maxReq.
// Any non-200 answer aborts the run: a benchmark that counts errors as throughput lies.
func load(u, tok string, c int, d, warm time.Duration, maxReq int64, proxyPID, upstreamPID int) (*result, error) {
	tr := &http.Transport{MaxIdleConns: 2 * c, MaxIdleConnsPerHost: 2 * c, DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	authz := "Bearer " + tok
	once := func(ctx context.Context) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", authz)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		el := time.Since(start)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
		}
		return el, nil
	}
	phase := func(dur time.Duration, record bool) (*result, error) {
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		defer cancel()
		var count atomic.Int64
		var mu sync.Mutex
		var firstErr error
		lat := make([][]time.Duration, c)
		var wg sync.WaitGroup
		cpu0 := [3]time.Duration{procCPU(proxyPID), procCPU(upstreamPID), selfCPU()}
		io0 := procIOCalls(proxyPID)
		start := time.Now()
		for w := 0; w < c; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				local := make([]time.Duration, 0, 1<<14)
				for ctx.Err() == nil && count.Add(1) <= maxReq {
					el, err := once(ctx)
					if err != nil {
						if ctx.Err() != nil {
							break
						}
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						cancel()
						break
					}
					if record {
						local = append(local, el)
					}
				}
				lat[w] = local
			}(w)
		}
		wg.Wait()
		elapsed := time.Since(start)
		if firstErr != nil {
			return nil, firstErr
		}
		res := &result{elapsed: elapsed, cpuProxy: procCPU(proxyPID) - cpu0[0],
			cpuUpstream: procCPU(upstreamPID) - cpu0[1], cpuLoad: selfCPU() - cpu0[2], ioCalls: procIOCalls(proxyPID) - io0}
		for _, l := range lat {
			res.latencies = append(res.latencies, l...)
		}
		res.n = int64(len(res.latencies))
		slices.Sort(res.latencies)
		return res, nil
	}
	if warm > 0 {
		if _, err := phase(warm, false); err != nil {
			return nil, err
		}
	}
	return phase(d, true)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDur(-d)
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/1000)
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	default:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	}
}
