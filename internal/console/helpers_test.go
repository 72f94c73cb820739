package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
)

// pairAsync makes a device call authenticateClient and returns a channel with the answer body.
func pairAsync(inst *cheftest.Instance, deviceID, name string) <-chan string {
	ch := make(chan string, 1)
	p, _ := json.Marshal(map[string]string{"device_id": deviceID, "device_name": name})
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[%s],"id":1}`, p)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, inst.URL+"/api/json-rpc/v1", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "ChefTill/3.2 (test)")
		resp, err := inst.Client.Do(req)
		if err != nil {
			ch <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- string(b)
	}()
	return ch
}
