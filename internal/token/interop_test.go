package token

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/keys"
)

// pyJWT returns Debian's python3 with PyJWT (and its cryptography backend), or skips: these tests
// check our tokens against an independent implementation.
func pyJWT(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if err := exec.Command(py, "-c", "import jwt, cryptography").Run(); err != nil {
		t.Skip("python3-jwt (with cryptography) is not installed")
	}
	return py
}

// PyJWT verifies posgate tokens of each algorithm using only the published JWKS.
func TestInteropPyJWTVerifiesOurTokens(t *testing.T) {
	py := pyJWT(t)
	const script = `
import json, sys, jwt
jwks, token, alg, aud, iss = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in jwks["keys"] if k["kid"] == kid)
pk = jwt.PyJWK(key)
claims = jwt.decode(token, pk.key, algorithms=[alg], audience=aud, issuer=iss,
                    options={"require": ["exp", "iat", "jti"], "verify_iat": False})
print(json.dumps({"sub": claims["sub"], "typ": jwt.get_unverified_header(token)["typ"]}))
`
	for _, alg := range []string{keys.AlgEdDSA, keys.AlgES256, keys.AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, alg)
			e.clk.Set(time.Now()) // PyJWT checks exp against the real clock
			raw, _ := e.issue(t, Claims{Subject: "us_42", Audience: []string{"api"}}, time.Hour)
			out, err := exec.Command(py, "-c", script, string(e.kr.JWKS()), raw, alg, "api", testIssuer).CombinedOutput()
			if err != nil {
				t.Fatalf("PyJWT refused our %s token: %v\n%s", alg, err, out)
			}
			var got map[string]string
			if err := json.Unmarshal(out, &got); err != nil || got["sub"] != "us_42" || got["typ"] != "at+jwt" {
				t.Fatalf("PyJWT read %s (%v)", out, err)
			}
			// And it refuses a tampered one (the check above can fail).
			parts := strings.Split(raw, ".")
			bad := parts[0] + "." + enc(`{"sub":"admin"}`) + "." + parts[2]
			if out, err := exec.Command(py, "-c", script, string(e.kr.JWKS()), bad, alg, "api", testIssuer).CombinedOutput(); err == nil {
				t.Fatalf("PyJWT accepted a tampered token: %s", out)
			}
		})
	}
}

// A shared-key token made by PyJWT passes VerifyHS256; one PyJWT makes with another key does not.
func TestInteropPyJWTHS256(t *testing.T) {
	py := pyJWT(t)
	mk := func(key []byte, payload string) string {
		out, err := exec.Command(py, "-c", `import sys, json, jwt
print(jwt.encode(json.loads(sys.argv[2]), bytes.fromhex(sys.argv[1]), algorithm="HS256"))`,
			hex.EncodeToString(key), payload).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	raw := mk(hsKey, `{"sub":"loc_1","iat":1700000000}`)
	p, err := VerifyHS256(raw, [][]byte{hsOther, hsKey})
	if err != nil {
		t.Fatalf("PyJWT HS256 token refused: %v", err)
	}
	var m map[string]any
	if json.Unmarshal(p, &m) != nil || m["sub"] != "loc_1" {
		t.Fatalf("payload %s", p)
	}
	_, err = VerifyHS256(mk(hsOther, `{"sub":"x"}`), [][]byte{hsKey})
	wantReason(t, err, ReasonSignature)
}
