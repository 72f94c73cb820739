package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/server/servertest"
)

// TestOutletsPage: the console lists orderpay outlets with their connection state and the
// replica holding the socket, and escapes their text.
func TestOutletsPage(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	st, o := inst.Admin(t, "POST", "/orderpay/outlets", map[string]any{"provider_outlet_id": "cafe-1",
		"pos_remote_id": "PE-<b>7781</b>", "provider_id": 321, "provider_name": "Cafe <script>x</script>"})
	if st != http.StatusCreated {
		t.Fatalf("create outlet: %d %v", st, o)
	}
	c := browserish(t)
	resp, body := do(t, c, http.MethodPost, inst.URL+"/admin/login", "token="+url.QueryEscape(inst.AdminToken))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, c, http.MethodGet, inst.URL+"/admin/outlets", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "cafe-1") || !strings.Contains(body, ">offline<") ||
		strings.Contains(body, "<script>x") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatalf("outlets page: %d %s", resp.StatusCode, body)
	}

	// Connect the outlet's POS: the page shows it online, on this replica.
	ab, _ := json.Marshal(map[string]string{"ProviderOutletID": "cafe-1", "POSRemoteID": "PE-<b>7781</b>", "AuthSecret": o["auth_secret"].(string)})
	ar, err := http.Post(inst.URL+"/api/powerepos/v1/auth", "application/json", strings.NewReader(string(ab)))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ AccessToken string }
	data, _ := io.ReadAll(ar.Body)
	ar.Body.Close()
	if err := json.Unmarshal(data, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("auth: %s", data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(inst.URL, "http")+"/ws?token="+tok.AccessToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body = do(t, c, http.MethodGet, inst.URL+"/admin/outlets", "")
		if strings.Contains(body, ">online<") && strings.Contains(body, inst.Svc.Hub.Replica()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outlet never shown online: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
