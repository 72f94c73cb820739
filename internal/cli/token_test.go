package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posgate/posgate/internal/cli"
	"github.com/posgate/posgate/internal/server/servertest"
)

// tokenCmd runs `posgate token ARGS` with the given environment variables.
func tokenCmd(t *testing.T, vars map[string]string, stdin string, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(append([]string{"token"}, args...), cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return vars[k] }, Context: context.Background()})
	return run{code, out.String(), errb.String()}
}

func writeSecret(t *testing.T, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenHelpSaysSecretsStayOffArgv(t *testing.T) {
	r := tokenCmd(t, nil, "", "help")
	if r.code != 0 || !strings.Contains(r.stdout, "never from the command line") {
		t.Fatalf("help: %d %s", r.code, r.stdout)
	}
	for _, d := range []string{"chimpy", "jackpot-session", "jackpot-m2m", "doshii-jwt", "chef"} {
		r := tokenCmd(t, nil, "", d, "-h")
		if r.code != 0 || !strings.Contains(r.stdout, "never from the command line") || (d != "chef" && !strings.Contains(r.stdout, "$POSGATE_")) {
			t.Fatalf("%s -h: %d %s", d, r.code, r.stdout)
		}
	}
	// There is no flag that takes a secret itself.
	if r := tokenCmd(t, nil, "", "chimpy", "--password", "hunter2"); r.code != 2 {
		t.Fatalf("--password accepted: %d", r.code)
	}
	if r := tokenCmd(t, nil, "", "nope"); r.code != 2 {
		t.Fatalf("unknown dialect: %d", r.code)
	}
}

func TestTokenDoshiiJWT(t *testing.T) {
	key := "pg_vk_" + strings.Repeat("a", 43)
	r := tokenCmd(t, map[string]string{"POSGATE_DOSHII_VENDOR_KEY": key}, "pg_lt_xyz\n",
		"doshii-jwt", "--location-token-file", "-", "--timestamp", "1700000000")
	mustOK(t, r, "doshii-jwt")
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(r.stdout), claims, func(*jwt.Token) (any, error) { return []byte(key), nil },
		jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatal(err)
	}
	if claims["locationToken"] != "pg_lt_xyz" || claims["timestamp"] != float64(1700000000) {
		t.Fatalf("claims %v", claims)
	}
	if r := tokenCmd(t, nil, "", "doshii-jwt", "--location-token-file", "-"); r.code != 1 || !strings.Contains(r.stderr, "POSGATE_DOSHII_VENDOR_KEY") {
		t.Fatalf("no key: %d %s", r.code, r.stderr)
	}
}

func TestTokenAgainstARealServer(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})

	// chimpy: the secret from a file, the password from the environment.
	st, c := inst.Admin(t, "POST", "/clients", map[string]any{"name": "app", "grant_types": []string{"password", "refresh_token"},
		"scopes": []string{"offline_access"}, "audiences": []string{"https://api.example"}})
	if st != 201 {
		t.Fatalf("client: %d %v", st, c)
	}
	if st, u := inst.Admin(t, "POST", "/users", map[string]any{"username": "ann", "password": "correct horse battery staple"}); st != 201 {
		t.Fatalf("user: %d %v", st, u)
	}
	saved := filepath.Join(t.TempDir(), "token.json")
	r := tokenCmd(t, map[string]string{"POSGATE_PASSWORD": "correct horse battery staple"}, "", "chimpy",
		"--url", inst.URL+"/oauth/token", "--client-id", c["client_id"].(string), "--client-secret-file", writeSecret(t, c["client_secret"].(string)),
		"--username", "ann", "--audience", "https://api.example", "--scope", "offline_access", "--save", saved)
	mustOK(t, r, "token chimpy")
	var tok map[string]any
	if json.Unmarshal([]byte(r.stdout), &tok) != nil || !strings.HasPrefix(tok["refresh_token"].(string), "pg_rt_") || tok["token_type"] != "Bearer" {
		t.Fatalf("chimpy: %s", r.stdout)
	}
	if st, err := os.Stat(saved); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("--save: %v", err)
	}
	r = tokenCmd(t, map[string]string{"POSGATE_PASSWORD": "wrong password!"}, "", "chimpy",
		"--url", inst.URL+"/oauth/token", "--client-id", c["client_id"].(string), "--client-secret-file", writeSecret(t, c["client_secret"].(string)),
		"--username", "ann")
	if r.code != 1 || !strings.Contains(r.stderr, "invalid_grant") || strings.Contains(r.stderr, "wrong password") {
		t.Fatalf("wrong password: %d %s", r.code, r.stderr)
	}

	// jackpot: session and m2m.
	st, j := inst.Admin(t, "POST", "/clients", map[string]any{"name": "shop", "grant_types": []string{"urn:ietf:params:oauth:grant-type:jwt-bearer", "client_credentials"},
		"scopes": []string{}, "audiences": []string{}, "apikey": true, "assertion_secret": true})
	if st != 201 {
		t.Fatalf("jackpot client: %d %v", st, j)
	}
	vars := map[string]string{"POSGATE_JACKPOT_API_KEY": j["client_id"].(string), "POSGATE_JACKPOT_API_SIGNATURE": j["assertion_secret"].(string),
		"POSGATE_CLIENT_SECRET": j["client_secret"].(string)}
	r = tokenCmd(t, vars, "", "jackpot-session", "--url", inst.URL, "--amount", "25", "--notification-key", "order-1")
	mustOK(t, r, "token jackpot-session")
	if !strings.Contains(r.stdout, `"access_token"`) || !strings.Contains(r.stderr, "order-1") {
		t.Fatalf("session: %s %s", r.stdout, r.stderr)
	}
	r = tokenCmd(t, vars, "", "jackpot-session", "--url", inst.URL, "--amount", "25", "--notification-key", "order-1")
	if r.code != 1 || !strings.Contains(r.stderr, "notificationKey was already used") {
		t.Fatalf("reused key: %d %s", r.code, r.stderr)
	}
	mustOK(t, tokenCmd(t, vars, "", "jackpot-m2m", "--url", inst.URL), "token jackpot-m2m")

	// chef: waits for the approval, then renews from the token file at once.
	tokFile := filepath.Join(t.TempDir(), "device.json")
	done := make(chan run, 1)
	go func() {
		done <- tokenCmd(t, nil, "", "chef", "--url", inst.URL+"/api/json-rpc/v1", "--device-id", "till-9", "--token-file", tokFile)
	}()
	approveWhenPending(t, inst, "till-9")
	r = <-done
	mustOK(t, r, "token chef")
	if !strings.Contains(r.stdout, `"access_token"`) || !strings.Contains(r.stderr, "waiting for a person") {
		t.Fatalf("chef: %s %s", r.stdout, r.stderr)
	}
	r = tokenCmd(t, nil, "", "chef", "--url", inst.URL+"/api/json-rpc/v1", "--device-id", "till-9", "--token-file", tokFile)
	mustOK(t, r, "token chef from the file")
}

func approveWhenPending(t *testing.T, inst *servertest.Instance, deviceID string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		_, list := inst.Admin(t, "GET", "/chef/devices?state=pending", nil)
		devs, _ := list["devices"].([]any)
		for _, d := range devs {
			if m := d.(map[string]any); m["device_id"] == deviceID && m["waiting"] == true {
				if st, _ := inst.Admin(t, "POST", "/chef/devices/"+m["id"].(string)+"/approve", nil); st != http.StatusOK {
					t.Fatalf("approve: %d", st)
				}
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for the request to arrive, not for time to pass
	}
	t.Fatal("the pairing request never appeared")
}
