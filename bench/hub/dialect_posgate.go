package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/client/orderpay"
)

// orderpayDialect is an integrator request through a real posgate: POST
// /v1/orderpay/outlets/{id}/requests?wait=5 on replica 0 is stored, delivered over the hub to the
// POS (client/orderpay, answering at once) connected to the last replica, and the POS's answer is
// the call's 200. On PostgreSQL the caller and the POS are on different replicas.
type orderpayDialect struct {
	c      *cluster
	tok    string
	cancel context.CancelFunc
	done   chan error
	path   string
	// With -args stages=1, each round trip is split where the simulated POS's handler is called:
	// "to POS" (the caller's request until the POS has it: API, enqueue, notice, delivery) and
	// "back" (the POS's answer until the caller has its 200: answer stored, notice, response).
	stages   bool
	seen     sync.Map // RequestID → time.Time the POS handler was called
	smu      sync.Mutex
	to, back []time.Duration
}

func (d *orderpayDialect) Start(ctx context.Context, o RoundTripOptions) error {
	if o.URL != "" {
		return errors.New("orderpay starts its own posgate (-url is not supported)")
	}
	var err error
	if d.c, err = startCluster(ctx, o); err != nil {
		return err
	}
	out, err := d.c.admin(ctx, "POST", "/orderpay/outlets", map[string]any{"provider_outlet_id": "bench-outlet",
		"pos_remote_id": "bench-pos", "provider_id": 1, "provider_name": "Bench"}, http.StatusCreated)
	if err != nil {
		return err
	}
	secret, _ := out["auth_secret"].(string)
	id, _ := out["id"].(string)
	if d.tok, err = d.c.accessToken(ctx, "orderpay:send", "posgate"); err != nil {
		return err
	}
	d.path = "/v1/orderpay/outlets/bench-outlet/requests?wait=5"
	d.stages = o.Args["stages"] == "1"
	pos := &orderpay.Client{URL: d.c.url(1), Credentials: orderpay.Credentials{ProviderOutletID: "bench-outlet",
		POSRemoteID: "bench-pos", AuthSecret: secret}, Concurrency: 16,
		Handler: orderpay.HandlerFunc(func(_ context.Context, r *orderpay.Request) orderpay.Answer {
			if d.stages {
				d.seen.Store(r.RequestID, time.Now())
			}
			return orderpay.Answer{Payload: json.RawMessage(`{"OrderID":"12345","Status":"OK"}`)}
		})}
	rctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan error, 1)
	go func() { d.done <- pos.Run(rctx) }()
	// Online as the caller's replica sees it: the store has the POS's presence.
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := d.c.admin(ctx, "GET", "/orderpay/outlets/"+id, nil, http.StatusOK)
		if err == nil && v["online"] == true {
			d.c.loadStarts()
			return nil
		}
		select {
		case err := <-d.done:
			return fmt.Errorf("the POS stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("the POS did not come online within 20 s")
		}
		time.Sleep(50 * time.Millisecond) // polls the outlet's state
	}
}

func (d *orderpayDialect) Do(ctx context.Context, i int64) error {
	id := "r-" + strconv.FormatInt(i, 10)
	body := `{"MessageType":1,"Payload":{"OrderID":"12345"},"RequestID":"` + id + `"}`
	start := time.Now()
	st, b, err := d.c.post(ctx, 0, d.path, d.tok, []byte(body))
	if err != nil {
		d.seen.Delete(id) // the POS may have seen it; the run fails anyway, the map stays small
		return err
	}
	if d.stages {
		end := time.Now()
		if v, ok := d.seen.LoadAndDelete(id); ok {
			seen := v.(time.Time)
			d.smu.Lock()
			d.to, d.back = append(d.to, seen.Sub(start)), append(d.back, end.Sub(seen))
			d.smu.Unlock()
		}
	}
	if st != http.StatusOK || !strings.Contains(string(b), `"Status":"OK"`) {
		return fmt.Errorf("%d %s", st, b)
	}
	return nil
}

func (d *orderpayDialect) Stop() {
	if d.stages {
		d.smu.Lock()
		fmt.Printf("orderpay stages (warm-up included): to POS %s; back %s\n", summarise(d.to), summarise(d.back))
		d.smu.Unlock()
		if d.c != nil {
			d.c.reportStages(context.Background())
		}
	}
	if d.cancel != nil {
		d.cancel()
		<-d.done
	}
	if d.c != nil {
		d.c.stop()
	}
}

// doshiiDialect is a platform event through a real posgate: POST
// /v1/doshii/locations/{id}/events on replica 0 (202 once stored), pushed to the venue's POS
// socket (a raw coder/websocket client on the last replica); the round trip ends when the POS
// has read the event. On PostgreSQL the publisher and the socket are on different replicas.
type doshiiDialect struct {
	c    *cluster
	tok  string
	path string
	ws   *websocket.Conn
	w    waiters
}

func (d *doshiiDialect) Start(ctx context.Context, o RoundTripOptions) error {
	if o.URL != "" {
		return errors.New("doshii starts its own posgate (-url is not supported)")
	}
	var err error
	if d.c, err = startCluster(ctx, o); err != nil {
		return err
	}
	v, err := d.c.admin(ctx, "POST", "/doshii/vendors", map[string]any{"api_name": "benchco"}, http.StatusCreated)
	if err != nil {
		return err
	}
	key, _ := v["vendor_key"].(string)
	vc := &doshii.Client{BaseURL: d.c.url(0) + "/pos/v3", Vendor: "benchco", Key: doshii.NewVendorKey(key), HTTPClient: d.c.client}
	org, err := vc.CreateOrganisation(ctx, doshii.Organisation{Name: "Bench Cafe", Country: "AU",
		Location: &doshii.Location{Name: "Bench Cafe CBD", Timezone: "Australia/Melbourne"}})
	if err != nil {
		return err
	}
	loc := org.Location
	if d.tok, err = d.c.accessToken(ctx, "doshii:publish", "doshii"); err != nil {
		return err
	}
	d.path = "/v1/doshii/locations/" + loc.ID + "/events"
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(d.c.url(1), "http")+"/pos/socket?token="+url.QueryEscape(loc.Token), nil)
	if err != nil {
		return fmt.Errorf("POS socket: %w", err)
	}
	d.ws = ws
	ws.SetReadLimit(1 << 20)
	// The heartbeat marks the venue online; the reader answers health checks with another.
	if err := d.heartbeat(); err != nil {
		return err
	}
	go d.read()
	d.c.loadStarts()
	return nil
}

func (d *doshiiDialect) heartbeat() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.ws.Write(ctx, websocket.MessageText,
		[]byte(`{"doshii":{"ping":`+strconv.FormatInt(time.Now().UnixMilli(), 10)+`,"version":"benchhub"}}`))
}

func (d *doshiiDialect) read() {
	for {
		_, b, err := d.ws.Read(context.Background())
		if err != nil {
			return
		}
		var f struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		if f.Type == "health_check" {
			go d.heartbeat()
			continue
		}
		if n, ok := strings.CutPrefix(f.ID, "ev-"); ok {
			d.w.done([]byte(n + " "))
		}
	}
}

func (d *doshiiDialect) Do(ctx context.Context, i int64) error {
	ch := d.w.add(i)
	body := `{"type":"order_created","data":{"orderId":"12345"},"id":"ev-` + strconv.FormatInt(i, 10) + `"}`
	st, b, err := d.c.post(ctx, 0, d.path, d.tok, []byte(body))
	if err != nil {
		return err
	}
	if st != http.StatusAccepted {
		return fmt.Errorf("%d %s", st, b)
	}
	return d.w.wait(ctx, i, ch)
}

func (d *doshiiDialect) Stop() {
	if d.ws != nil {
		_ = d.ws.CloseNow()
	}
	if d.c != nil {
		d.c.stop()
	}
}
