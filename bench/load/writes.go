package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posgate/posgate/bench/internal/cpuprobe"
	"github.com/posgate/posgate/internal/config"
)

// Write-path mode (-writes). In one posgate process it drives, per concurrency and round, the
// client_credentials grant (no store write: the baseline of the same process) and four flows that
// must write before they answer:
//
//   - refresh: chimpy refresh-token rotation, each worker following its own rotation chain (one
//     write transaction per request: mark the presented token rotated, store its successor);
//   - jwt-bearer: jackpot's client session with a fresh assertion per request (a new
//     notificationKey each time, no jti: one single-use record per request);
//   - consume: a gateway route with consume: true, each request presenting a fresh access token
//     minted before the run (a single-use claim and a jti revocation per request);
//   - route (-flows …,route): the same gateway route without consume, no store write: the
//     token's verification and the proxied call alone, the most consume could reach;
//   - refresh+flood (-flood): refresh again while -flood-rate wrong client secrets per second
//     arrive, each from a different forwarded address, so every attempt costs its failed-attempt
//     audit event and throttle counter writes; its ratio is against refresh alone in the same
//     round. With -flood the same wrong secrets are also driven alone, unpaced ("wrong-secret"),
//     so what one refused attempt costs is measured per request like every flow.
//
// For each it reports the median over rounds of requests/s, p50, p99, the ratio to
// client_credentials measured in the same round, CPU per request (of this whole process:
// posgate and the load generator) and fsync+fdatasync calls per request. The fsync count comes
// from `perf stat` on the syscalls:sys_enter_fsync and sys_enter_fdatasync tracepoints (kernel
// counters, no ptrace), attached to this process and, on PostgreSQL, to the server's WAL writer and
// the backends connected to the benchmark's database (see cpuprobe.PGServerPIDs), for the warm-up and the
// measured phase, divided by the requests of both; "-" when perf cannot count.

type writeEnv struct {
	o    *options
	inst *posgateInstance
	base string

	ccBasic string

	chimpyBasic, username, password string
	chains                          []string // per worker: its current refresh token

	jpKey string
	jpSig []byte

	tokens chan string // fresh access tokens for the consume route
}

const (
	benchChimpyAudience = "https://api.chimpy.bench.test"
	consumePath         = "/bench/consume"
	routePath           = "/bench/route"
)

func runWrites(ctx context.Context, o *options) error {
	if o.url != "" {
		return errors.New("-writes drives an in-process posgate; -url is not supported with it")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}\n"))
	}))
	defer up.Close()
	inst, err := startPosgate(ctx, o, func(c *config.Config) {
		// The flood spoofs X-Forwarded-For so every wrong secret counts against a fresh address,
		// the costliest case for the failed-attempt writes (no address is ever blocked cheaply).
		c.Server.TrustedProxies = []string{"127.0.0.1/32"}
		c.Upstreams = map[string]string{"up": up.URL}
		c.Routes = append(c.Routes, config.Route{Path: consumePath, Methods: []string{"POST"},
			Auth: []string{"posgate"}, Scopes: []string{"read"}, Upstream: "up", Consume: true},
			// The same route without consume: what a consume call costs besides its writes.
			config.Route{Path: routePath, Methods: []string{"POST"},
				Auth: []string{"posgate"}, Scopes: []string{"read"}, Upstream: "up"})
	})
	if err != nil {
		return err
	}
	defer inst.stop()
	e := &writeEnv{o: o, inst: inst, base: inst.url}
	e.ccBasic = basicAuth(inst.clientID, inst.secret)
	if err := e.setup(ctx); err != nil {
		return err
	}

	targets := []target{e.cc()}
	for _, t := range []target{e.refresh(), e.jwtBearer(), e.consume(), e.route()} {
		if slices.Contains(strings.Split(o.flows, ","), t.name) {
			targets = append(targets, t)
		}
	}
	if o.flood && !slices.Contains(strings.Split(o.flows, ","), "refresh") {
		return errors.New("-flood measures refresh under the flood: -flows must include refresh")
	}
	if o.flood {
		targets = append(targets, e.flood(false))
	}
	flood := e.flood(true)
	fmt.Printf("posgate write path, store %s, GOMAXPROCS=%d, %s per run (+%s warm-up) × %d rounds; medians over rounds\n",
		o.store, runtime.GOMAXPROCS(0), o.duration, o.warmup, o.rounds)
	fmt.Println("cpu/req: this whole process (posgate and the load generator); fsync/req: fsync+fdatasync calls (perf tracepoints) per request")
	fmt.Println("cpu ratio: client_credentials' cpu/req over the flow's, the ratio a CPU-bound run would show")
	if o.store == "postgres" {
		fmt.Println("server side (warm-up and measured phase): recv/req: messages the database's backends received (about one per round trip, two with TLS); xact/req: transactions committed, reads included; pg cpu/req: CPU of those backends and the WAL writer")
	}
	const row = "%5v %-14v %9v %9v %9v %9v %6v %9v %9v %9v %8v %8v %8v %11v\n"
	fmt.Printf(row, "conc", "flow", "req/s", "p50", "p90", "p99", "ratio", "cpu/req", "cpu ratio", "fsync/req", "failures", "recv/req", "xact/req", "pg cpu/req")
	for _, c := range o.concurrency {
		if err := e.ensureChains(ctx, c); err != nil {
			return err
		}
		all := map[string][]*result{}
		ratios := map[string][]float64{}
		for range o.rounds {
			var ccRate, refreshRate float64
			for _, t := range targets {
				if t.name == "consume" || t.name == "route" {
					if err := e.mint(ctx, o.consumeTokens); err != nil {
						return err
					}
				}
				r := runProbed(ctx, t, c, o)
				all[t.name] = append(all[t.name], r)
				switch t.name {
				case "client_credentials":
					ccRate = r.rate()
				case "refresh":
					refreshRate = r.rate()
				}
				ratios[t.name] = append(ratios[t.name], r.rate()/ccRate)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			if o.flood {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				var fr *result
				wg.Add(1)
				floodCtx, cancelFlood := context.WithCancel(ctx)
				go func() {
					defer wg.Done()
					fr = run(floodCtx, newClient(c), flood, c, o.duration+o.warmup+time.Minute, o.max, 0)
					close(stop)
				}()
				t := e.refresh()
				t.name = "refresh+flood"
				r := runProbed(ctx, t, c, o)
				cancelFlood()
				wg.Wait()
				all[t.name] = append(all[t.name], r)
				ratios[t.name] = append(ratios[t.name], r.rate()/refreshRate)
				all["(flood)"] = append(all["(flood)"], fr)
				ratios["(flood)"] = append(ratios["(flood)"], 0)
			}
		}
		var names []string
		for _, t := range targets {
			names = append(names, t.name)
		}
		if o.flood {
			names = append(names, "refresh+flood", "(flood)")
		}
		cpuPerReq := func(rs []*result) float64 {
			return medianF(mapR(rs, func(r *result) float64 { return float64(r.cpu) / float64(max(r.n, 1)) }))
		}
		ccCPU := cpuPerReq(all["client_credentials"])
		for _, name := range names {
			rs := all[name]
			fails := 0
			for _, r := range rs {
				fails += r.failures
				if r.firstErr != nil && !errors.Is(r.firstErr, context.Canceled) {
					fmt.Fprintf(os.Stderr, "%s c=%d: first failure: %v\n", name, c, r.firstErr)
				}
			}
			ratio := fmt.Sprintf("%.2f", medianF(ratios[name]))
			switch name {
			case "client_credentials", "(flood)":
				ratio = "-"
			}
			cpuRatio := "-"
			if c := cpuPerReq(rs); c > 0 && name != "client_credentials" && name != "(flood)" {
				cpuRatio = fmt.Sprintf("%.2f", ccCPU/c)
			}
			fs := "-"
			if f := medianF(mapR(rs, func(r *result) float64 { return r.fsyncPerReq() })); f >= 0 {
				fs = fmt.Sprintf("%.2f", f)
			}
			fmt.Printf(row, c, name,
				fmt.Sprintf("%.0f", medianF(mapR(rs, (*result).rate))),
				fmtDur(time.Duration(medianF(mapR(rs, func(r *result) float64 { return float64(r.quantile(.5)) })))),
				fmtDur(time.Duration(medianF(mapR(rs, func(r *result) float64 { return float64(r.quantile(.9)) })))),
				fmtDur(time.Duration(medianF(mapR(rs, func(r *result) float64 { return float64(r.quantile(.99)) })))),
				ratio,
				fmtDur(time.Duration(cpuPerReq(rs))), cpuRatio, fs, fails,
				perReqCol(rs, func(r *result) int64 { return r.trips }),
				perReqCol(rs, func(r *result) int64 { return r.commits }),
				pgCPUCol(rs))
		}
	}
	return nil
}

// perReqCol is the median over rs of a count per request, "-" when it was not counted.
func perReqCol(rs []*result, v func(*result) int64) string {
	if f := medianF(mapR(rs, func(r *result) float64 { return r.perReq(v(r)) })); f >= 0 && len(rs) > 0 {
		return fmt.Sprintf("%.2f", f)
	}
	return "-"
}

func pgCPUCol(rs []*result) string {
	if len(rs) == 0 || rs[0].trips < 0 && rs[0].commits < 0 {
		return "-"
	}
	return fmtDur(time.Duration(medianF(mapR(rs, func(r *result) float64 {
		return float64(r.pgCPU) / float64(max(r.n+r.warmN, 1))
	}))))
}

// profiled and profileFile track the one CPU profile -cpuprofile asks for.
var (
	profiled    bool
	profileFile *os.File
)

// runProbed runs t once, measuring the process CPU of the measured phase and the fsync calls of
// warm-up and measured phase together; on PostgreSQL also the server's side of the same phases:
// the messages its backends received, the transactions committed and the CPU its processes used.
func runProbed(ctx context.Context, t target, c int, o *options) *result {
	pids := []int{os.Getpid()}
	var pg *pgProbe
	if o.store == "postgres" {
		pg = startPGProbe(ctx, o.dsn)
		pids = append(pids, pg.pids...)
	}
	stopPerf := startPerf(pids, "syscalls:sys_enter_fsync", "syscalls:sys_enter_fdatasync")
	profile := o.cpuprofile != "" && t.name == o.profileFlow && !profiled
	t.measured = func() func() time.Duration {
		if profile {
			if f, err := os.Create(o.cpuprofile); err == nil {
				profiled = pprof.StartCPUProfile(f) == nil
				defer func() {
					if !profiled {
						f.Close()
					}
				}()
				profileFile = f
			}
		}
		start := cpuprobe.Process()
		return func() time.Duration {
			cpu := cpuprobe.Process() - start
			if profile && profileFile != nil {
				pprof.StopCPUProfile()
				profileFile.Close()
				profileFile = nil
			}
			return cpu
		}
	}
	r := run(ctx, newClient(c), t, c, o.duration, o.max, o.warmup)
	if n := stopPerf(); n != nil {
		r.fsyncs = n[0] + n[1]
	}
	if pg != nil {
		pg.stop(ctx, r)
	}
	return r
}

// pgProbe counts, on the PostgreSQL server, what one run cost it: messages received by the
// benchmark database's backends (recvfrom calls that returned data: about one per round trip,
// two with TLS, which reads a record's header and body apart), transactions committed in the
// database (pg_stat_database.xact_commit: every statement outside a transaction is one, reads
// included) and the CPU of its processes (/proc/<pid>/stat), those that started during the run
// included. Statistics reach pg_stat_database
// up to a second after a backend's transaction ends, so the probe waits that long before each
// reading.
type pgProbe struct {
	dsn      string
	pids     []int
	recv     func() []int64
	commits0 int64
	cpu0     time.Duration
}

const pgStatDelay = 1200 * time.Millisecond

func startPGProbe(ctx context.Context, dsn string) *pgProbe {
	p := &pgProbe{dsn: dsn, pids: cpuprobe.PGServerPIDs(ctx, dsn)}
	time.Sleep(pgStatDelay)
	p.commits0 = cpuprobe.PGCommits(ctx, dsn)
	p.cpu0 = cpuprobe.Pids(p.pids)
	p.recv = startPerf(p.pids, "syscalls:sys_exit_recvfrom", "--filter", "ret > 0")
	return p
}

func (p *pgProbe) stop(ctx context.Context, r *result) {
	if n := p.recv(); n != nil {
		r.trips = n[0]
	}
	// Backends the pool opened during the run count too, from their start.
	now := cpuprobe.PGServerPIDs(ctx, p.dsn)
	gone := slices.DeleteFunc(slices.Clone(p.pids), func(pid int) bool { return slices.Contains(now, pid) })
	r.pgCPU = cpuprobe.Pids(now) + cpuprobe.Pids(gone) - p.cpu0
	time.Sleep(pgStatDelay)
	if c := cpuprobe.PGCommits(ctx, p.dsn); c >= 0 && p.commits0 >= 0 {
		r.commits = c - p.commits0
	}
}

func mapR(rs []*result, f func(*result) float64) []float64 {
	out := make([]float64, 0, len(rs))
	for _, r := range rs {
		if r != nil {
			out = append(out, f(r))
		}
	}
	return out
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// startPerf counts the tracepoint events (perf stat -e arguments, each optionally followed by
// "--filter", expr) of pids until the returned function is called; that function returns one
// count per event, or nil when perf could not count.
func startPerf(pids []int, events ...string) func() []int64 {
	path, err := exec.LookPath("perf")
	if err != nil || len(pids) == 0 {
		return func() []int64 { return nil }
	}
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	args := []string{"stat", "-x", ","}
	var names []string
	for i := 0; i < len(events); i++ {
		if events[i] == "--filter" && i+1 < len(events) {
			args = append(args, "--filter", events[i+1])
			i++
			continue
		}
		args = append(args, "-e", events[i])
		names = append(names, events[i])
	}
	args = append(args, "-p", strings.Join(ps, ","))
	var stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return func() []int64 { return nil }
	}
	time.Sleep(100 * time.Millisecond) // let perf attach before the load starts
	return func() []int64 {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		out := make([]int64, len(names))
		found := 0
		for _, line := range strings.Split(stderr.String(), "\n") {
			f := strings.Split(line, ",")
			if len(f) < 3 {
				continue
			}
			i := slices.Index(names, f[2])
			if i < 0 {
				continue
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return nil
			}
			out[i] = v
			found++
		}
		if found != len(names) {
			return nil
		}
		return out
	}
}

func basicAuth(id, sec string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(sec)))
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// setup creates, through the admin API, a chimpy client and user, and a jackpot client with an
// API signature.
func (e *writeEnv) setup(ctx context.Context) error {
	var ch struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := e.inst.admin(ctx, "POST", "/clients", map[string]any{"name": "bench-chimpy",
		"grant_types": []string{"password", "refresh_token"}, "scopes": []string{"rentals", "offline_access"},
		"audiences": []string{benchChimpyAudience}}, &ch); err != nil {
		return err
	}
	e.chimpyBasic = basicAuth(ch.ClientID, ch.ClientSecret)
	e.username, e.password = "bench@chimpy.bench.test", "bench-"+randomID()
	var u map[string]any
	if err := e.inst.admin(ctx, "POST", "/users", map[string]any{"username": e.username, "password": e.password}, &u); err != nil {
		return err
	}
	var jp struct {
		ClientID        string `json:"client_id"`
		AssertionSecret string `json:"assertion_secret"`
	}
	if err := e.inst.admin(ctx, "POST", "/clients", map[string]any{"name": "bench-jackpot", "apikey": true,
		"assertion_secret": true, "grant_types": []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"}}, &jp); err != nil {
		return err
	}
	if jp.ClientID == "" || jp.AssertionSecret == "" {
		return errors.New("admin API did not return the jackpot API key and signature")
	}
	e.jpKey, e.jpSig = jp.ClientID, []byte(jp.AssertionSecret)
	return nil
}

// ensureChains gives each of c workers a live refresh chain (a password sign-in, outside any
// measured run, for workers that have none).
func (e *writeEnv) ensureChains(ctx context.Context, c int) error {
	for len(e.chains) < c {
		e.chains = append(e.chains, "")
	}
	for i := range c {
		if e.chains[i] != "" {
			continue
		}
		form := url.Values{"grant_type": {"password"}, "username": {e.username}, "password": {e.password},
			"audience": {benchChimpyAudience}, "scope": {"offline_access rentals"}}.Encode()
		req, _ := http.NewRequestWithContext(ctx, "POST", e.base+"/oauth/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", e.chimpyBasic)
		var out struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := doJSON(req, &out); err != nil {
			return fmt.Errorf("chimpy sign-in: %w", err)
		}
		if out.RefreshToken == "" {
			return errors.New("chimpy sign-in: no refresh_token")
		}
		e.chains[i] = out.RefreshToken
	}
	return nil
}

func doJSON(req *http.Request, out any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.300s", resp.StatusCode, b.Bytes())
	}
	return json.Unmarshal(b.Bytes(), out)
}

func ccForm(audience string) string {
	return url.Values{"grant_type": {"client_credentials"}, "audience": {audience}, "scope": {"read"}}.Encode()
}

func formRequest(u, authz, body string) (*http.Request, error) {
	req, err := http.NewRequest("POST", u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", authz)
	return req, nil
}

func wantToken(status int, body []byte) error {
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"access_token":"`)) {
		return fmt.Errorf("status %d: %.200s", status, body)
	}
	return nil
}

func (e *writeEnv) cc() target {
	form := ccForm(e.o.audience)
	return target{name: "client_credentials",
		newRequest: func(int) (*http.Request, error) { return formRequest(e.base+"/oauth/token", e.ccBasic, form) },
		check:      func(_, status int, body []byte) error { return wantToken(status, body) },
	}
}

// refresh rotates worker w's chain: each answer's refresh_token is the next request's. A failed
// rotation ends the chain; ensureChains starts a new one before the next run.
func (e *writeEnv) refresh() target {
	return target{name: "refresh",
		newRequest: func(w int) (*http.Request, error) {
			if e.chains[w] == "" {
				return nil, errExhausted
			}
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {e.chains[w]}}.Encode()
			return formRequest(e.base+"/oauth/token", e.chimpyBasic, form)
		},
		check: func(w, status int, body []byte) error {
			var out struct {
				RefreshToken string `json:"refresh_token"`
			}
			if err := wantToken(status, body); err != nil {
				e.chains[w] = ""
				return err
			}
			if err := json.Unmarshal(body, &out); err != nil || out.RefreshToken == "" {
				e.chains[w] = ""
				return fmt.Errorf("no refresh_token in %.200s", body)
			}
			e.chains[w] = out.RefreshToken
			return nil
		},
	}
}

func (e *writeEnv) jwtBearer() target {
	return target{name: "jwt-bearer",
		newRequest: func(int) (*http.Request, error) {
			assertion, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
				"amount": 25, "iat": time.Now().Unix(), "notificationKey": "nk-" + randomID(), "userId": "bench",
			}).SignedString(e.jpSig)
			if err != nil {
				return nil, err
			}
			body, _ := json.Marshal(map[string]string{"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
				"client_id": e.jpKey, "assertion": assertion})
			req, err := http.NewRequest("POST", e.base+"/v2/token", bytes.NewReader(body))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/json")
			return req, nil
		},
		check: func(_, status int, body []byte) error {
			if status != http.StatusOK || !bytes.Contains(body, []byte(`"token":"`)) && !bytes.Contains(body, []byte(`"access_token":"`)) {
				return fmt.Errorf("status %d: %.200s", status, body)
			}
			return nil
		},
	}
}

// mint fills the consume route's token pool with n fresh client_credentials tokens (outside the
// measured run).
func (e *writeEnv) mint(ctx context.Context, n int) error {
	e.tokens = make(chan string, n)
	form := ccForm(e.o.audience)
	client := newClient(8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	left := make(chan struct{}, n)
	for range n {
		left <- struct{}{}
	}
	close(left)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range left {
				req, _ := formRequest(e.base+"/oauth/token", e.ccBasic, form)
				var out struct {
					AccessToken string `json:"access_token"`
				}
				resp, err := client.Do(req.WithContext(ctx))
				if err == nil {
					err = json.NewDecoder(resp.Body).Decode(&out)
					resp.Body.Close()
				}
				if err != nil || out.AccessToken == "" {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("mint consume token: %v", err))
					mu.Unlock()
					return
				}
				e.tokens <- out.AccessToken
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (e *writeEnv) consume() target { return e.gatewayRoute("consume", consumePath) }

// route is consume's route without consume: token verification and the proxied call, no store
// write. It bounds what consume can reach, whatever its writes cost.
func (e *writeEnv) route() target { return e.gatewayRoute("route", routePath) }

// gatewayRoute posts to the gateway route at path, each request with a fresh access token.
func (e *writeEnv) gatewayRoute(name, path string) target {
	return target{name: name,
		newRequest: func(int) (*http.Request, error) {
			select {
			case tok := <-e.tokens:
				req, err := http.NewRequest("POST", e.base+path, strings.NewReader("{}"))
				if err != nil {
					return nil, err
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				return req, nil
			default:
				return nil, errExhausted
			}
		},
		check: func(_, status int, body []byte) error {
			if status != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", status, body)
			}
			return nil
		},
	}
}

// flood sends -flood-rate requests per second, each an unknown client id with a wrong secret, a
// fresh id from a fresh forwarded address each time, so no throttle counter ever blocks it
// cheaply and every attempt costs its audit event and counter writes; 401 is the expected answer.
//
// Unpaced (the "wrong-secret" row), the same requests are driven as fast as -concurrency workers
// can, alone, so the cost of one refused attempt is measured like any flow's.
func (e *writeEnv) flood(paced bool) target {
	form := ccForm(e.o.audience)
	name := "(flood)"
	if !paced {
		name = "wrong-secret"
	}
	interval := time.Second / time.Duration(max(e.o.floodRate, 1))
	var mu sync.Mutex
	var next time.Time
	return target{name: name,
		newRequest: func(int) (*http.Request, error) {
			// Paced: the flood is a fixed number of wrong secrets per second, not as many as two
			// shared cores can answer, so what it costs the legitimate writes is its writes and
			// the work of refusing that many requests.
			if paced {
				mu.Lock()
				now := time.Now()
				if next.Before(now) {
					next = now
				}
				slot := next
				next = next.Add(interval)
				mu.Unlock()
				time.Sleep(time.Until(slot))
			}
			req, err := formRequest(e.base+"/oauth/token", basicAuth("pg_ck_"+randomID(), "pg_cs_wrong"+randomID()), form)
			if err != nil {
				return nil, err
			}
			var a [3]byte
			_, _ = rand.Read(a[:])
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", a[0], a[1], a[2]))
			return req, nil
		},
		check: func(_, status int, body []byte) error {
			if status == http.StatusUnauthorized || status == http.StatusTooManyRequests || status == http.StatusBadRequest {
				return nil
			}
			return fmt.Errorf("status %d: %.200s", status, body)
		},
	}
}
