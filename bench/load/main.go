// Command load measures posgate's token endpoint against the physical limit of this machine.
//
//	go run ./bench/load                        # in-process posgate (SQLite), concurrency 1, 8, 64
//	go run ./bench/load -duration 10s -rounds 3 -concurrency 8
//	go run ./bench/load -store postgres -dsn postgres://postgres@127.0.0.1:5432/bench
//	go run ./bench/load -url http://127.0.0.1:8080 -client-id pg_ck_… -client-secret pg_cs_… -audience https://api
//	go run ./bench/load -writes -flood -concurrency 8 -duration 2s -rounds 3   # the write path (writes.go)
//
// For each concurrency it drives, in the same run and over the same HTTP stack, (a) a reference
// handler that only signs one EdDSA JWT per request — no parsing, no client lookup, no secret check:
// the fastest any token endpoint can be here — and (b) posgate's POST /oauth/token with the
// client_credentials grant (HTTP Basic, form body, an audience and a scope). It reports requests
// per second, p50/p90/p99 latency and the ratio posgate / reference. Runs alternate between the
// two (-rounds) so drift in the machine's load hits both alike.
//
// It is bounded in time (-duration per run) and count (-max per run) and talks to loopback only.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/server"
)

func main() {
	if err := run1(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type options struct {
	duration    time.Duration
	warmup      time.Duration
	max         int64
	rounds      int
	concurrency []int
	url         string
	clientID    string
	secret      string
	audience    string
	store       string
	dsn         string
	logLevel    string
	cpuprofile  string
	only        string

	writes        bool
	flood         bool
	consumeTokens int
	flows         string
	profileFlow   string
	floodRate     int
}

func parseFlags() (*options, error) {
	o := &options{}
	var conc string
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per run (each concurrency, each target, each round)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each run")
	flag.Int64Var(&o.max, "max", 2_000_000, "at most this many requests per run")
	flag.IntVar(&o.rounds, "rounds", 2, "alternate reference and posgate runs this many times per concurrency")
	flag.StringVar(&conc, "concurrency", "1,8,64", "comma-separated numbers of concurrent clients")
	flag.StringVar(&o.url, "url", "", "an already running posgate on loopback (default: start one in-process)")
	flag.StringVar(&o.clientID, "client-id", "", "with -url: a client allowed client_credentials")
	flag.StringVar(&o.secret, "client-secret", "", "with -url: its secret")
	flag.StringVar(&o.audience, "audience", "https://api.bench.test", "the audience to request")
	flag.StringVar(&o.store, "store", "sqlite", "in-process store: sqlite or postgres")
	flag.StringVar(&o.dsn, "dsn", "", "in-process store DSN for -store postgres")
	flag.StringVar(&o.logLevel, "log-level", "info", "in-process posgate log level (logs are formatted, then discarded)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the posgate runs to this file")
	flag.StringVar(&o.only, "only", "", `"posgate" or "reference" to drive only one target`)
	flag.BoolVar(&o.writes, "writes", false, "measure the write path: client_credentials, refresh rotation, jackpot jwt-bearer and a consume route (see writes.go)")
	flag.BoolVar(&o.flood, "flood", false, "with -writes: also refresh rotation under a concurrent flood of wrong client secrets")
	flag.IntVar(&o.consumeTokens, "consume-tokens", 12000, "with -writes: access tokens minted before each consume run (the run ends when they are spent)")
	flag.StringVar(&o.flows, "flows", "refresh,jwt-bearer,consume", "with -writes: the write flows to drive beside client_credentials (also: route, consume's route without its writes)")
	flag.StringVar(&o.profileFlow, "profile-flow", "refresh", "with -writes and -cpuprofile: the flow whose first run is profiled")
	flag.IntVar(&o.floodRate, "flood-rate", 500, "with -flood: wrong secrets per second (spread over as many workers as -concurrency)")
	flag.Parse()
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("-concurrency: %q is not a number from 1 to 1024", s)
		}
		o.concurrency = append(o.concurrency, n)
	}
	if o.duration <= 0 || o.duration > 5*time.Minute || o.rounds < 1 || o.rounds > 20 || o.max < 1 {
		return nil, errors.New("-duration must be in (0, 5m], -rounds in [1, 20], -max ≥ 1")
	}
	if o.url != "" {
		if err := loopbackOnly(o.url); err != nil {
			return nil, err
		}
		if o.clientID == "" || o.secret == "" {
			return nil, errors.New("-url needs -client-id and -client-secret")
		}
	}
	return o, nil
}

// loopbackOnly refuses any target that is not on this machine: this tool generates load.
func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("-url %q: want http(s)://127.0.0.1:PORT", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: only loopback addresses are allowed", raw)
	}
	return nil
}

func run1() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	if o.writes {
		return runWrites(ctx, o)
	}

	base := o.url
	if base == "" {
		inst, err := startPosgate(ctx, o, nil)
		if err != nil {
			return err
		}
		defer inst.stop()
		base = inst.url
		o.clientID, o.secret = inst.clientID, inst.secret
	}
	refURL, stopRef, err := startReference()
	if err != nil {
		return err
	}
	defer stopRef()

	form := url.Values{"grant_type": {"client_credentials"}, "audience": {o.audience}, "scope": {"read"}}.Encode()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(o.clientID)+":"+url.QueryEscape(o.secret)))
	mk := func(name, u string) target {
		return target{
			name: name,
			newRequest: func(int) (*http.Request, error) {
				req, err := http.NewRequest("POST", u, strings.NewReader(form))
				if err != nil {
					return nil, err
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", basic)
				return req, nil
			},
			check: func(_, status int, body []byte) error {
				if status != http.StatusOK || !bytes.Contains(body, []byte(`"access_token":"`)) {
					return fmt.Errorf("status %d: %.200s", status, body)
				}
				return nil
			},
		}
	}
	ref := mk("reference", refURL+"/token")
	pg := mk("posgate", base+"/oauth/token")

	// One request each first: fail fast with a clear message rather than a table of failures.
	for _, t := range []target{ref, pg} {
		if r := run(ctx, http.DefaultClient, t, 1, 0, 1, 0); r.failures > 0 {
			return fmt.Errorf("%s: %v", t.name, r.firstErr)
		}
	}

	var prof *os.File
	if o.cpuprofile != "" {
		if prof, err = os.Create(o.cpuprofile); err != nil {
			return err
		}
		defer prof.Close()
	}

	fmt.Printf("posgate token endpoint vs reference (sign one EdDSA JWT), GOMAXPROCS=%d, %s per run × %d rounds, target %s\n",
		runtime.GOMAXPROCS(0), o.duration, o.rounds, pg.newRequestURL(base))
	const row = "%5v %10v %8v %8v %8v | %13v %8v %8v %8v | %5v %8v\n"
	fmt.Printf(row, "conc", "ref req/s", "p50", "p90", "p99", "posgate req/s", "p50", "p90", "p99", "ratio", "failures")
	for _, c := range o.concurrency {
		var refs, pgs []*result
		for range o.rounds {
			if o.only != "posgate" {
				refs = append(refs, run(ctx, newClient(c), ref, c, o.duration, o.max, o.warmup))
			}
			if o.only != "reference" {
				if prof != nil {
					_ = pprof.StartCPUProfile(prof)
				}
				pgs = append(pgs, run(ctx, newClient(c), pg, c, o.duration, o.max, o.warmup))
				if prof != nil {
					pprof.StopCPUProfile()
					prof.Close()
					prof = nil // one profile: the first posgate run at the first concurrency
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		r, p := merge(refs), merge(pgs)
		ratio := 0.0
		if r != nil && p != nil && r.rate() > 0 {
			ratio = p.rate() / r.rate()
		}
		fails := 0
		for _, x := range append(refs, pgs...) {
			fails += x.failures
			if x.firstErr != nil {
				fmt.Fprintf(os.Stderr, "%s c=%d: first failure: %v\n", x.name, c, x.firstErr)
			}
		}
		fmt.Printf(row, c, rate(r), q(r, .5), q(r, .9), q(r, .99), rate(p), q(p, .5), q(p, .9), q(p, .99),
			fmt.Sprintf("%.2f", ratio), fails)
	}
	return nil
}

func (t target) newRequestURL(string) string {
	req, err := t.newRequest(0)
	if err != nil {
		return "?"
	}
	return req.URL.String()
}

func rate(r *result) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", r.rate())
}

func q(r *result, x float64) string {
	if r == nil {
		return "-"
	}
	return fmtDur(r.quantile(x))
}

// merge combines the rounds of one target: total requests over total time, all latencies.
func merge(rs []*result) *result {
	if len(rs) == 0 {
		return nil
	}
	m := &result{name: rs[0].name, concurrency: rs[0].concurrency}
	for _, r := range rs {
		m.n += r.n
		m.failures += r.failures
		m.elapsed += r.elapsed
		m.latencies = append(m.latencies, r.latencies...)
	}
	sortDurations(m.latencies)
	return m
}

// newClient is a fresh connection pool sized for c concurrent requests (keep-alive, no
// compression), so runs do not share connections.
func newClient(c int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: c, MaxIdleConnsPerHost: c, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
	}}
}

// startReference serves referenceHandler on 127.0.0.1.
func startReference() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: referenceHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

type posgateInstance struct {
	url, clientID, secret string
	// admin calls posgate's admin API (JSON in and out) and decodes the answer into out.
	admin func(ctx context.Context, method, path string, in, out any) error
	stop  func()
}

// startPosgate starts a complete posgate in this process (the same server `posgate serve` runs:
// every module, the middleware chain, the store) on 127.0.0.1 with plain HTTP, and creates a
// client through its admin API. configure, if set, adjusts the configuration first.
func startPosgate(ctx context.Context, o *options, configure func(*config.Config)) (*posgateInstance, error) {
	dir, err := os.MkdirTemp("", "posgate-bench-")
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Server.DataDir = dir
	cfg.Server.Addr = ""
	cfg.Server.HTTPAddr = "127.0.0.1:0"
	cfg.Server.LogLevel = o.logLevel
	if o.store == "postgres" {
		cfg.Store.Driver, cfg.Store.DSN = "postgres", o.dsn
		cfg.Server.Issuer = "http://posgate.bench" // replicas of one deployment share the issuer
	}
	if configure != nil {
		configure(cfg)
	}
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	adminToken := secret.Generate(secret.PrefixAdminToken)
	srv, err := server.New(ctx, server.Options{
		Config: cfg,
		Log:    server.NewLogger(io.Discard, o.logLevel),
		Out:    io.Discard,
		Getenv: func(k string) string {
			if k == "POSGATE_ADMIN_TOKEN" {
				return adminToken
			}
			return os.Getenv(k)
		},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(sctx) }()
	stop := func() { cancel(); <-done; os.RemoveAll(dir) }

	admin := func(ctx context.Context, method, path string, in, out any) error {
		body, _ := json.Marshal(in)
		req, err := http.NewRequestWithContext(ctx, method, srv.HTTPURL()+server.AdminPrefix+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("admin %s %s: status %d: %.300s", method, path, resp.StatusCode, b)
		}
		return json.Unmarshal(b, out)
	}
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := admin(ctx, "POST", "/clients", map[string]any{"name": "bench", "grant_types": []string{"client_credentials"},
		"scopes": []string{"read"}, "audiences": []string{o.audience}}, &c); err != nil {
		stop()
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &posgateInstance{url: srv.HTTPURL(), clientID: c.ClientID, secret: c.ClientSecret, admin: admin, stop: stop}, nil
}
