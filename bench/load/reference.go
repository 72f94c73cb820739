package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// referenceHandler is the physical limit of a token endpoint on this machine: it reads the request
// body and signs one EdDSA JWT with claims of the size posgate's carry, and nothing else — no
// parsing, no client lookup, no secret check. A token endpoint can go no faster than this over the
// same HTTP stack.
func referenceHandler() http.Handler {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	method := jwt.SigningMethodEdDSA
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = r.Body.Read(make([]byte, 512))
		now := time.Now()
		var jti [16]byte
		_, _ = rand.Read(jti[:])
		tok := jwt.NewWithClaims(method, jwt.MapClaims{
			"iss":       "http://127.0.0.1:8080",
			"sub":       "cl_aaaaaaaaaaaaaaaa",
			"aud":       "https://api.example.com",
			"client_id": "cl_aaaaaaaaaaaaaaaa",
			"scope":     "read write",
			"azp":       "pg_ck_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
			"gty":       "client_credentials",
			"jti":       base64.RawURLEncoding.EncodeToString(jti[:]),
			"iat":       now.Unix(),
			"exp":       now.Add(time.Hour).Unix(),
		})
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = "reference"
		s, err := tok.SignedString(priv)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"access_token":"` + s + `","expires_in":3600,"token_type":"Bearer"}` + "\n"))
	})
}
