package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgrelayDialect is the floor under a round trip across two PostgreSQL replicas: the hops the
// issue and DESIGN.md require and nothing else. The caller POSTs to relay 0, which stores the
// request (one durable INSERT) and announces it (one NOTIFY, grouped and committed
// asynchronously as pgbus does); relay 1, LISTENing, writes it to the POS's websocket; the POS
// answers; relay 1 stores the answer (one durable UPDATE) and announces it; relay 0, LISTENing,
// answers the caller's POST. No authentication, no JSON, no leases, presence, ordering or
// metrics. With -args oneway=1 it is doshii's shape instead: the POS reading the message ends
// the round trip, and relay 1 stores nothing after writing it.
//
// The relays are separate processes, as posgate's replicas are, so every hop costs what it costs
// between processes. What posgate's round trip takes beyond this floor is posgate's; what the
// floor itself takes is the machine's, for this architecture.
type pgrelayDialect struct {
	adminDSN, db string
	procs        []*exec.Cmd
	urls         []string
	client       *http.Client
	ws           *websocket.Conn
	oneway       bool
	w            waiters
}

func (d *pgrelayDialect) Start(ctx context.Context, o RoundTripOptions) error {
	if o.URL != "" || (o.Store != "" && o.Store != "postgres") {
		return errors.New("pgrelay runs its own relays on PostgreSQL (-store postgres, no -url)")
	}
	d.oneway = d.oneway || o.Args["oneway"] == "1"
	d.adminDSN = o.DSN
	if d.adminDSN == "" {
		d.adminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	d.db = "benchrelay_" + randHex(6)
	if err := pgAdmin(ctx, d.adminDSN, "CREATE DATABASE "+d.db); err != nil {
		d.db = ""
		return err
	}
	u, err := url.Parse(d.adminDSN)
	if err != nil {
		return err
	}
	u.Path = "/" + d.db
	dsn := u.String()
	// The table has the two indexes every outbox needs (its order, and the unique id).
	if err := pgAdmin(ctx, dsn, `CREATE TABLE relay (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		id TEXT NOT NULL UNIQUE, payload BYTEA NOT NULL, answer BYTEA)`); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for range 2 {
		cmd := exec.Command(self, "-role", "relay", "-dsn", dsn)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		d.procs = append(d.procs, cmd)
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return fmt.Errorf("relay did not start: %w", err)
		}
		d.urls = append(d.urls, strings.TrimSpace(line))
	}
	d.client = &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d.ws, _, err = websocket.Dial(dctx, "ws"+strings.TrimPrefix(d.urls[1], "http")+"/ws", nil)
	if err != nil {
		return err
	}
	d.ws.SetReadLimit(1 << 20)
	go d.pos()
	// The dial returns once the upgrade is written; relay 1 registers the socket after that.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := d.client.Get(d.urls[1] + "/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("relay 1 did not register the POS socket within 10 s")
		}
		time.Sleep(10 * time.Millisecond) // polls the relay's state
	}
}

// pos answers every request with its id and a short answer (or, oneway, marks it received).
func (d *pgrelayDialect) pos() {
	for {
		_, b, err := d.ws.Read(context.Background())
		if err != nil {
			return
		}
		if d.oneway {
			d.w.done(b)
			continue
		}
		id, _, _ := strings.Cut(string(b), " ")
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = d.ws.Write(wctx, websocket.MessageText, []byte(id+` {"OrderID":"12345","Status":"OK"}`))
		cancel()
		if err != nil {
			return
		}
	}
}

func (d *pgrelayDialect) Do(ctx context.Context, i int64) error {
	var ch chan struct{}
	if d.oneway {
		ch = d.w.add(i)
	}
	u := d.urls[0] + "/req?id=" + strconv.FormatInt(i, 10)
	if d.oneway {
		u += "&wait=0" // 200 once stored and announced, as doshii's 202
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", u, strings.NewReader(requestBody))
	res, err := d.client.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%d %s", res.StatusCode, b)
	}
	if d.oneway {
		return d.w.wait(ctx, i, ch)
	}
	if !strings.Contains(string(b), `"Status":"OK"`) {
		return fmt.Errorf("answer %s", b)
	}
	return nil
}

func (d *pgrelayDialect) Stop() {
	if d.ws != nil {
		d.ws.CloseNow()
	}
	for _, p := range d.procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	if d.db != "" {
		_ = pgAdmin(context.Background(), d.adminDSN, "DROP DATABASE IF EXISTS "+d.db+" WITH (FORCE)")
	}
}

func pgAdmin(ctx context.Context, dsn, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// relay is one replica of the floor: POST /req stores and announces a request and waits for its
// answer's notice; GET /ws holds the POS socket, writes announced requests to it and stores and
// announces its answers. It prints its base URL on standard output.
type relay struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	waiting map[string]chan []byte
	ws      *websocket.Conn

	smu     sync.Mutex
	next    *notices // the group the next notice joins; nil when none is waiting
	sending bool     // the sender goroutine is running
}

func roleRelay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	dsn := fs.String("dsn", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		return err
	}
	r := &relay{pool: pool, waiting: map[string]chan []byte{}}
	listen, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return err
	}
	if _, err := listen.Exec(ctx, "LISTEN relay"); err != nil {
		return err
	}
	go r.listen(listen)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /req", r.request)
	mux.HandleFunc("GET /ws", r.socket)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		held := r.ws != nil
		r.mu.Unlock()
		if !held {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	fmt.Println("http://" + ln.Addr().String())
	return (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln)
}

func (r *relay) request(w http.ResponseWriter, req *http.Request) {
	id := req.URL.Query().Get("id")
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil || id == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	ch := make(chan []byte, 1)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, id)
		r.mu.Unlock()
	}()
	if _, err := r.pool.Exec(req.Context(), `INSERT INTO relay (id, payload) VALUES ($1, $2)`, id, body); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := r.notify("q " + id + " " + string(body)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if req.URL.Query().Get("wait") == "0" {
		w.WriteHeader(http.StatusOK)
		return
	}
	select {
	case a := <-ch:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a)
	case <-time.After(10 * time.Second):
		http.Error(w, "no answer", http.StatusGatewayTimeout)
	}
}

func (r *relay) socket(w http.ResponseWriter, req *http.Request) {
	c, err := websocket.Accept(w, req, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	r.mu.Lock()
	r.ws = c
	r.mu.Unlock()
	for {
		_, b, err := c.Read(context.Background())
		if err != nil {
			return
		}
		id, answer, _ := strings.Cut(string(b), " ")
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := r.pool.Exec(ctx, `UPDATE relay SET answer = $2 WHERE id = $1`, id, []byte(answer)); err != nil {
				fmt.Fprintln(os.Stderr, "relay: answer:", err)
				return
			}
			if err := r.notify("a " + id + " " + answer); err != nil {
				fmt.Fprintln(os.Stderr, "relay: notify:", err)
			}
		}()
	}
}

// listen hands requests to the socket this relay holds and answers to the requests waiting here.
func (r *relay) listen(conn *pgx.Conn) {
	for {
		n, err := conn.WaitForNotification(context.Background())
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay: listen:", err)
			os.Exit(1)
		}
		kind, rest, _ := strings.Cut(n.Payload, " ")
		id, payload, _ := strings.Cut(rest, " ")
		r.mu.Lock()
		ws, ch := r.ws, r.waiting[id]
		r.mu.Unlock()
		switch {
		case kind == "q" && ws != nil:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = ws.Write(ctx, websocket.MessageText, []byte(id+" "+payload))
			cancel()
		case kind == "a" && ch != nil:
			ch <- []byte(payload)
		}
	}
}

// notices is one NOTIFY transaction's messages; done is closed once it is sent, err set.
type notices struct {
	msgs []string
	done chan struct{}
	err  error
}

// notify sends msg as pgbus does, so the floor pays the same hand-offs as posgate: the notice
// joins the group waiting for the one sender goroutine (started if idle), which sends each group
// in one statement committed without waiting for the WAL flush; notify returns once msg's group
// is sent.
func (r *relay) notify(msg string) error {
	r.smu.Lock()
	if r.next == nil {
		r.next = &notices{done: make(chan struct{})}
	}
	g := r.next
	g.msgs = append(g.msgs, msg)
	if !r.sending {
		r.sending = true
		go r.send()
	}
	r.smu.Unlock()
	<-g.done
	return g.err
}

func (r *relay) send() {
	for {
		r.smu.Lock()
		g := r.next
		r.next = nil
		if g == nil {
			r.sending = false
			r.smu.Unlock()
			return
		}
		r.smu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, g.err = r.pool.Exec(ctx, `SELECT pg_notify('relay', m) FROM unnest($1::text[]) AS m,
			(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit`, g.msgs)
		cancel()
		close(g.done)
	}
}
