package chef_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/posgate/posgate/client/chef"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// TestMain starts the posgate the examples talk to, with a reporting API behind it, and plays
// the person at the console: it approves every device that asks to pair.
func TestMain(m *testing.M) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"success":true,"data":{"total":"1234.50"},"error_num":0,"error_message":""}}`))
	}))
	inst, tb, stop := servertest.StartMain(servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": api.URL}
	}})
	done := make(chan struct{})
	approver := make(chan struct{})
	go func() {
		defer close(approver)
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_, list := inst.Admin(tb, "GET", "/chef/devices?state=pending", nil)
			devs, _ := list["devices"].([]any)
			for _, d := range devs {
				inst.Admin(tb, "POST", "/chef/devices/"+d.(map[string]any)["id"].(string)+"/approve", nil)
			}
		}
	}()
	dir, _ := os.MkdirTemp("", "chef-example-")
	os.Setenv("POSGATE_URL", inst.URL)
	os.Setenv("STATE_DIR", dir)
	code := m.Run()
	close(done)
	<-approver
	stop()
	api.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A till pairs once (the call waits until a person approves it in the console), keeps its
// device token in a file, and makes its data calls; the token is renewed before it expires,
// without a person.
func Example() {
	store := tokensource.FileStore{Path: filepath.Join(os.Getenv("STATE_DIR"), "device-token.json")}
	saved, err := store.Load()
	if err != nil {
		log.Fatal(err)
	}
	till := chef.New(context.Background(), chef.Config{
		Endpoint:   os.Getenv("POSGATE_URL") + "/api/json-rpc/v1",
		DeviceID:   "till-1",
		DeviceName: "Front till",
		UserAgent:  "FrontTill/2.4",
		Token:      saved,
		Persist:    store.Save,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // how long to wait for a person
	defer cancel()
	var sales struct {
		Total string `json:"total"`
	}
	if err := till.Call(ctx, "Reports.getSales", []any{map[string]string{"from": "2026-01-01"}}, &sales); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sales:", sales.Total)
	// Output: sales: 1234.50
}
