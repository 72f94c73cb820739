package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/hub"
)

type echoOptions struct {
	duration time.Duration
	rounds   int
	conns    int
	size     int
}

func runEcho(args []string) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	o := echoOptions{}
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per round and target")
	fs.IntVar(&o.rounds, "rounds", 3, "alternate bare and hub this many times")
	fs.IntVar(&o.conns, "conns", 1, "connections, each doing sequential round trips")
	fs.IntVar(&o.size, "size", 200, "message size in bytes (a typical JSON request)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.duration <= 0 || o.duration > 5*time.Minute || o.rounds < 1 || o.rounds > 20 || o.conns < 1 || o.conns > 1000 || o.size < 1 || o.size > 1<<20 {
		return errors.New("-duration in (0, 5m], -rounds in [1, 20], -conns in [1, 1000], -size in [1, 1 MiB]")
	}
	bare, err := startEchoServer(bareEcho)
	if err != nil {
		return err
	}
	defer bare.close()
	h := hub.New(hub.Options{})
	hubSrv, err := startEchoServer(hubEcho(h))
	if err != nil {
		return err
	}
	defer hubSrv.close()
	defer h.Shutdown(context.Background())

	fmt.Printf("echo round trip, %d connection(s), %d-byte text messages, %s per run, %d rounds\n", o.conns, o.size, o.duration, o.rounds)
	var all [2][]time.Duration
	for r := 0; r < o.rounds; r++ {
		for i, s := range []*echoServer{bare, hubSrv} {
			lat, err := echoRun(s.url, o)
			if err != nil {
				return err
			}
			fmt.Printf("  round %d %-4s %s (%.0f round trips/s)\n", r+1, []string{"bare", "hub"}[i], summarise(append([]time.Duration(nil), lat...)), float64(len(lat))/o.duration.Seconds())
			all[i] = append(all[i], lat...)
		}
	}
	b, hb := summarise(all[0]), summarise(all[1])
	fmt.Printf("bare coder/websocket: %s\n", b)
	fmt.Printf("hub:                  %s\n", hb)
	fmt.Printf("ratio hub/bare: p50 %.2f, p99 %.2f\n", float64(hb.p50)/float64(b.p50), float64(hb.p99)/float64(b.p99))
	return nil
}

type echoServer struct {
	url string
	srv *http.Server
}

func (s *echoServer) close() { _ = s.srv.Close() }

func startEchoServer(h http.HandlerFunc) (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &echoServer{url: "ws://" + ln.Addr().String() + "/", srv: srv}, nil
}

// bareEcho is the baseline: coder/websocket with nothing around it.
func bareEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for {
		typ, b, err := c.Read(context.Background())
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.Write(ctx, typ, b)
		cancel()
		if err != nil {
			return
		}
	}
}

// hubEcho serves through the hub: its reader, codec call, send queue and writer.
func hubEcho(h *hub.Hub) http.HandlerFunc {
	echo := hub.HandlerFunc(func(_ context.Context, c *hub.Conn, msg []byte) error {
		return c.Send(append([]byte(nil), msg...), nil)
	})
	var n sync.Mutex
	i := 0
	return func(w http.ResponseWriter, r *http.Request) {
		n.Lock()
		i++
		tenant := fmt.Sprintf("bench:%d", i)
		n.Unlock()
		_ = h.Accept(w, r, hub.Spec{Dialect: "bench", Tenants: []string{tenant}, Handler: echo})
	}
}

// echoRun drives o.conns connections doing sequential round trips for o.duration.
func echoRun(url string, o echoOptions) ([]time.Duration, error) {
	msg := []byte(strings.Repeat("x", o.size))
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := echoConn(url, msg, o.duration)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, l...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return lat, firstErr
}

func echoConn(url string, msg []byte, d time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	lat := make([]time.Duration, 0, 1<<14)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		start := time.Now()
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			return lat, err
		}
		if _, _, err := c.Read(ctx); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(start))
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	return lat, nil
}
