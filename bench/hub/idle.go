package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/dialect/doshii"
	"github.com/posgate/posgate/internal/hub"
)

type idleOptions struct {
	sockets int
	procs   int
	addrs   int
	ping    time.Duration
	settle  time.Duration
	window  time.Duration
	gc      []string // "GOGC" or "GOGC/GOMEMLIMIT", one fresh server each
	server  string   // hub | bare | doshii
	// heartbeat: each client socket sends a doshii heartbeat this often and reads its pong (0:
	// none; the doshii server mode).
	heartbeat time.Duration
	bin       string // posgate mode: a built posgate binary ("" builds ./cmd/posgate)
	dialect   string // posgate mode: the POS sockets' dialect, doshii | orderpay
}

func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	o := idleOptions{}
	var gc string
	fs.IntVar(&o.sockets, "sockets", 2000, "idle sockets to hold in the server process (the open-file limit is 20 000)")
	fs.IntVar(&o.procs, "procs", 2, "client processes the sockets are spread over")
	fs.IntVar(&o.addrs, "addrs", 2, "source addresses 127.0.0.2 … used by the client processes (round robin)")
	fs.DurationVar(&o.ping, "ping", 5*time.Second, "the hub's ping interval during the run")
	fs.DurationVar(&o.settle, "settle", 0, "wait after the last socket opened before sampling (default: 2 ping intervals)")
	fs.DurationVar(&o.window, "window", 0, "sampling window (default: 3 ping intervals)")
	fs.StringVar(&gc, "gc", "100,400", `server GC settings, one fresh server each: "GOGC" or "GOGC/GOMEMLIMIT" (e.g. 400/600MiB)`)
	fs.StringVar(&o.server, "server", "hub", `"hub" (internal/hub), "bare" (coder/websocket with a reader and a pinger per socket), "doshii" (the hub with doshii's heartbeat codec: every client socket sends a heartbeat each -heartbeat and reads its pong) or "posgate" (posgate serve on SQLite: doshii POS sockets, one location token each, heartbeats as in doshii)`)
	fs.StringVar(&o.bin, "bin", "", "posgate mode: the posgate binary (default: go build ./cmd/posgate)")
	fs.StringVar(&o.dialect, "dialect", "doshii", `posgate mode: "doshii" (one location and token per socket, heartbeats) or "orderpay" (one outlet and single-use ticket per socket on /ws, pings only)`)
	fs.DurationVar(&o.heartbeat, "heartbeat", 30*time.Second, "doshii and posgate server modes: how often each socket sends a heartbeat (posgate: 0 sends none, the baseline of pings only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.sockets < 1 || o.sockets > 19500 || o.procs < 1 || o.procs > 64 || o.addrs < 1 || o.addrs > 250 {
		return errors.New("-sockets in [1, 19500], -procs in [1, 64], -addrs in [1, 250]")
	}
	if o.ping < 100*time.Millisecond || o.ping > time.Minute || (o.server != "hub" && o.server != "bare" && o.server != "doshii" && o.server != "posgate") {
		return errors.New(`-ping in [100ms, 1m]; -server "hub", "bare", "doshii" or "posgate"`)
	}
	if o.server == "posgate" && (o.ping < time.Second || (o.dialect != "doshii" && o.dialect != "orderpay")) {
		return errors.New(`-server posgate: -ping at least 1s (hub.ping_interval is in seconds), -dialect "doshii" or "orderpay"`)
	}
	if o.server != "doshii" && (o.server != "posgate" || o.dialect == "orderpay") {
		// An orderpay POS sends nothing on an idle socket: the server's pings are its keepalive.
		o.heartbeat = 0
	} else if (o.heartbeat != 0 || o.server != "posgate") && (o.heartbeat < 100*time.Millisecond || o.heartbeat > 5*time.Minute) {
		return errors.New("-heartbeat in [100ms, 5m] (posgate: or 0, pings only)")
	}
	if o.settle == 0 {
		o.settle = 2 * o.ping
	}
	if o.window == 0 {
		o.window = 3 * o.ping
	}
	for _, g := range strings.Split(gc, ",") {
		o.gc = append(o.gc, strings.TrimSpace(g))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	server := o.server
	if server == "posgate" {
		server += " (" + o.dialect + ")"
	}
	fmt.Printf("idle sockets: %d in one %s server process, clients in %d processes over %d source addresses, ping every %s; settle %s, sample %s\n",
		o.sockets, server, o.procs, o.addrs, o.ping, o.settle, o.window)
	for _, g := range o.gc {
		if err := idleRun(self, g, o); err != nil {
			return fmt.Errorf("gc %s: %w", g, err)
		}
	}
	return nil
}

// serverStats is what the server role reports on /stats.
type serverStats struct {
	Sockets    int   `json:"sockets"`
	RSSKiB     int64 `json:"rss_kib"`
	HeapInuse  int64 `json:"heap_inuse"`
	StackInuse int64 `json:"stack_inuse"`
	Sys        int64 `json:"sys"`
	Goroutines int   `json:"goroutines"`
	NumGC      int64 `json:"num_gc"`
	NextGC     int64 `json:"next_gc"` // the heap size at which the next collection starts
	CPUNanos   int64 `json:"cpu_ns"`
	Pongs      int64 `json:"pongs"` // doshii mode: heartbeats answered
	// StoreWrites: posgate mode, the store statements that wrote heartbeats' online deadlines.
	StoreWrites int64 `json:"store_writes"`
	Released    int64 `json:"released"` // posgate mode: heap memory returned to the OS

	// StartStack is the size new goroutines' stacks start at (the runtime adapts it to the
	// average stack it scans).
	StartStack int64 `json:"start_stack"`
}

func idleRun(self, gc string, o idleOptions) error {
	gogc, limit, _ := strings.Cut(gc, "/")
	var stats func(gc bool) (*serverStats, error)
	var wsURL, tokenPrefix string
	if o.server == "posgate" {
		ps, err := startIdlePosgate(context.Background(), o.dialect, o.sockets, o.ping, gogc, limit, o.bin)
		if err != nil {
			return err
		}
		defer ps.stop()
		stats, wsURL, tokenPrefix = ps.stats, ps.wsURL(), ps.prefix
	} else {
		env := append(os.Environ(), "GOGC="+gogc)
		if limit != "" {
			env = append(env, "GOMEMLIMIT="+limit)
		}
		srv := exec.Command(self, "-role", "server", "-mode", o.server, "-ping", o.ping.String())
		srv.Env = env
		srv.Stderr = os.Stderr
		out, err := srv.StdoutPipe()
		if err != nil {
			return err
		}
		stdin, err := srv.StdinPipe()
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return err
		}
		defer func() { stdin.Close(); _ = srv.Wait() }()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return fmt.Errorf("server did not start: %w", err)
		}
		addr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))
		statsURL := "http://" + addr + "/stats"
		stats = func(gc bool) (*serverStats, error) { return getStats(statsURL, gc) }
		wsURL = "ws://" + addr + "/ws"
	}

	time.Sleep(time.Second) // let the empty server settle before its baseline
	base, err := stats(true)
	if err != nil {
		return err
	}

	start := time.Now()
	var clients []*exec.Cmd
	var ready sync.WaitGroup
	var failed atomic.Value
	per := o.sockets / o.procs
	for p := 0; p < o.procs; p++ {
		n := per
		if p == o.procs-1 {
			n = o.sockets - per*(o.procs-1)
		}
		src := fmt.Sprintf("127.0.0.%d", 2+p%o.addrs)
		cl := exec.Command(self, "-role", "client", "-url", wsURL, "-n", strconv.Itoa(n), "-src", src,
			"-heartbeat", o.heartbeat.String(), "-tokens", tokenPrefix, "-first", strconv.Itoa(per*p))
		cl.Stderr = os.Stderr
		cout, err := cl.StdoutPipe()
		if err != nil {
			return err
		}
		cin, err := cl.StdinPipe()
		if err != nil {
			return err
		}
		if err := cl.Start(); err != nil {
			return err
		}
		clients = append(clients, cl)
		defer func() { cin.Close(); _ = cl.Wait() }()
		ready.Add(1)
		go func() {
			l, err := bufio.NewReader(cout).ReadString('\n')
			if err != nil || !strings.HasPrefix(l, "ready") {
				failed.Store(fmt.Errorf("client %s: %q %v", src, l, err))
			}
			ready.Done()
			_, _ = io.Copy(io.Discard, cout)
		}()
	}
	ready.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	connected := time.Since(start)
	time.Sleep(o.settle)
	first, err := stats(false)
	if err != nil {
		return err
	}
	if first.Sockets < o.sockets*99/100 {
		return fmt.Errorf("server holds %d sockets, want %d", first.Sockets, o.sockets)
	}
	var rss []int64
	last := first
	for end := time.Now().Add(o.window); time.Now().Before(end); {
		time.Sleep(time.Second)
		s, err := stats(false)
		if err != nil {
			return err
		}
		rss = append(rss, s.RSSKiB)
		last = s
	}
	if last.Sockets < o.sockets*99/100 {
		return fmt.Errorf("server holds %d sockets after the window, want %d (sockets were closed: missed pongs?)", last.Sockets, o.sockets)
	}
	if last.Sockets != o.sockets {
		// A starved client process can miss two pings on an overloaded machine; the figures
		// are per socket held.
		fmt.Printf("  note: %d of %d sockets were closed before the end of the window (missed pongs)\n", o.sockets-last.Sockets, o.sockets)
	}
	live, err := stats(true)
	if err != nil {
		return err
	}
	slices.Sort(rss)
	med, top := rss[len(rss)/2], rss[len(rss)-1]
	n := float64(last.Sockets)
	perKiB := func(v, b int64) float64 { return float64(v-b) / n }
	cpu := time.Duration(last.CPUNanos - first.CPUNanos)
	elapsed := o.window.Seconds()
	fmt.Printf("GOGC=%s GOMEMLIMIT=%s: %d sockets opened in %s; RSS empty %d KiB, steady median %d KiB, max %d KiB\n",
		gogc, orNone(limit), o.sockets, connected.Round(time.Millisecond), base.RSSKiB, med, top)
	fmt.Printf("  RSS per socket: median %.1f KiB, max %.1f KiB | live after GC: heap %.1f KiB + stacks %.1f KiB per socket | goroutines %d | GCs in window %d\n",
		perKiB(med, base.RSSKiB), perKiB(top, base.RSSKiB),
		float64(live.HeapInuse-base.HeapInuse)/1024/n, float64(live.StackInuse-base.StackInuse)/1024/n,
		live.Goroutines, last.NumGC-first.NumGC)
	fmt.Printf("  goroutine stacks start at %d KiB (empty server: %d KiB)\n", live.StartStack>>10, base.StartStack>>10)
	fmt.Printf("  heap goal after GC (the heap the collector lets grow before the next cycle): %.1f KiB per socket; with stacks %.1f KiB\n",
		float64(live.NextGC-base.NextGC)/1024/n, float64(live.NextGC-base.NextGC+live.StackInuse-base.StackInuse)/1024/n)
	fmt.Printf("  ping CPU: %s over %.0fs = %.2f µs per socket per second (%.1f µs per socket per ping)\n",
		cpu.Round(time.Millisecond), elapsed, float64(cpu.Microseconds())/elapsed/n,
		float64(cpu.Microseconds())/elapsed/n*o.ping.Seconds())
	if o.server == "posgate" {
		fmt.Printf("  posgate: Go runtime's memory from the OS less what it returned, per socket: %.1f KiB (the rest of RSS is outside the Go runtime: SQLite's caches, binary)\n",
			float64((last.Sys-last.Released)-(base.Sys-base.Released))/1024/n)
		fmt.Printf("  posgate: the heap and stacks above are as sampled (no forced collection: garbage included)\n")
	}
	if o.server == "posgate" && o.dialect == "doshii" {
		fmt.Printf("  posgate: online-deadline store statements in window %d (%.2f/s) for %d heartbeats (%.1f/s)\n",
			last.StoreWrites-first.StoreWrites, float64(last.StoreWrites-first.StoreWrites)/elapsed, last.Pongs-first.Pongs, float64(last.Pongs-first.Pongs)/elapsed)
	}
	if o.heartbeat > 0 {
		beats := elapsed / o.heartbeat.Seconds() * n
		fmt.Printf("  doshii heartbeats every %s: %d pongs in window; server CPU %.1f µs per heartbeat (pings included: compare -server hub); %.2f µs per socket per second\n",
			o.heartbeat, last.Pongs-first.Pongs, float64(cpu.Microseconds())/beats, float64(cpu.Microseconds())/elapsed/n)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func getStats(url string, gc bool) (*serverStats, error) {
	if gc {
		url += "?gc=1"
	}
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s serverStats
	return &s, json.NewDecoder(resp.Body).Decode(&s)
}

// startingStack reads the runtime's current starting size of goroutine stacks.
func startingStack() int64 {
	s := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// raiseFileLimit lifts the soft open-file limit to the hard one.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// roleServer holds sockets until its standard input closes.
func roleServer(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	mode := fs.String("mode", "hub", "")
	ping := fs.Duration("ping", 30*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseFileLimit()
	var sockets atomic.Int64 // bare mode
	var pongs atomic.Int64   // doshii mode
	count := func() int { return int(sockets.Load()) }
	mux := http.NewServeMux()
	switch *mode {
	case "hub":
		h := hub.New(hub.Options{PingInterval: *ping})
		count = h.Len
		handler := hub.HandlerFunc(func(context.Context, *hub.Conn, []byte) error { return nil })
		var id atomic.Int64
		mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
			tenant := "bench:" + strconv.FormatInt(id.Add(1), 10)
			_ = h.Accept(w, r, hub.Spec{Dialect: "bench", Tenants: []string{tenant}, Exclusive: true, Handler: handler})
		})
	case "bare":
		mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			sockets.Add(1)
			defer sockets.Add(-1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				t := time.NewTicker(*ping)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						pctx, pcancel := context.WithTimeout(ctx, *ping)
						err := c.Ping(pctx)
						pcancel()
						if err != nil && ctx.Err() == nil {
							c.CloseNow()
							return
						}
					}
				}
			}()
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		})
	case "doshii":
		// The hub with doshii's socket codec: a heartbeat is decoded and answered with its pong,
		// as posgate's doshii sockets do (without their store write of the online deadline).
		h := hub.New(hub.Options{PingInterval: *ping})
		count = h.Len
		handler := hub.HandlerFunc(func(_ context.Context, c *hub.Conn, msg []byte) error {
			hb, err := doshii.DecodeHeartbeat(msg)
			if err != nil {
				return &hub.CloseError{Code: hub.CodePolicy, Reason: "not a heartbeat"}
			}
			pongs.Add(1)
			_ = c.Send(doshii.AppendPong(make([]byte, 0, 96), hb), nil)
			return nil
		})
		var id atomic.Int64
		mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
			tenant := "doshii:" + strconv.FormatInt(id.Add(1), 10)
			_ = h.Accept(w, r, hub.Spec{Dialect: "doshii", Tenants: []string{tenant}, Exclusive: true, Handler: handler})
		})
	default:
		return fmt.Errorf("unknown server mode %q", *mode)
	}
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss, _ := procStatus(os.Getpid(), "VmRSS")
		cpu, _ := procCPU(os.Getpid())
		_ = json.NewEncoder(w).Encode(serverStats{
			Sockets: count(), RSSKiB: rss, HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse),
			Sys: int64(ms.Sys), Goroutines: runtime.NumGoroutine(), NumGC: int64(ms.NumGC), NextGC: int64(ms.NextGC), CPUNanos: int64(cpu),
			Pongs: pongs.Load(), StartStack: startingStack(),
		})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the coordinator closes our input
	return nil
}

// roleClient opens n sockets from source address src, answers the server's pings, prints
// "ready" and holds them until its standard input closes.
func roleClient(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	url := fs.String("url", "", "")
	n := fs.Int("n", 0, "")
	src := fs.String("src", "127.0.0.2", "")
	heartbeat := fs.Duration("heartbeat", 0, "")
	tokens := fs.String("tokens", "", "")
	first := fs.Int("first", 0, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseFileLimit()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*src)}, Timeout: 30 * time.Second}
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}}
	var conns []*websocket.Conn
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan string)
	go func() {
		for i := range *n {
			next <- clientURL(*url, *tokens, *first+i)
		}
		close(next)
	}()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, _, err := websocket.Dial(ctx, u, opts)
				cancel()
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					switch {
					case *heartbeat > 0:
						go heartbeats(c, *heartbeat)
					case *tokens != "":
						go discard(c) // posgate's doshii sockets send health checks: data frames
					default:
						c.CloseRead(context.Background()) // keeps reading: pings are answered
					}
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Printf("failed %d/%d: %v\n", *n-len(conns), *n, firstErr)
		return firstErr
	}
	fmt.Printf("ready %d\n", len(conns))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// discard reads and drops every frame until the socket ends (pings are answered meanwhile).
func discard(c *websocket.Conn) {
	for {
		if _, _, err := c.Read(context.Background()); err != nil {
			return
		}
	}
}

// heartbeats is a doshii POS's socket: a heartbeat right away and then every d (the first one
// at a random point of the period, so a client's sockets do not beat in step), pongs read.
func heartbeats(c *websocket.Conn, d time.Duration) {
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Duration(rand.Int64N(int64(d))))
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		msg := `{"doshii":{"ping":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `,"version":"bench 1.0"}}`
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Write(ctx, websocket.MessageText, []byte(msg))
		cancel()
		if err != nil {
			return
		}
		<-t.C
	}
}
