package tokensource_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/server/servertest"
)

// TestMain starts the posgate the examples talk to and passes a client's credentials through the
// environment.
func TestMain(m *testing.M) {
	inst, tb, stop := servertest.StartMain(servertest.Options{})
	_, c := inst.Admin(tb, "POST", "/clients", map[string]any{"name": "reports job", "grant_types": []string{"client_credentials"},
		"scopes": []string{"reports"}, "audiences": []string{}})
	os.Setenv("POSGATE_URL", inst.URL)
	os.Setenv("CLIENT_ID", c["client_id"].(string))
	os.Setenv("CLIENT_SECRET", c["client_secret"].(string))
	code := m.Run()
	stop()
	os.Exit(code)
}

// A Source around any token request: here client_credentials sent as JSON. The token is
// fetched once, then served from the cache until shortly before it expires.
func ExampleNew() {
	ep := tokensource.Endpoint{URL: os.Getenv("POSGATE_URL") + "/oauth/token"}
	body := map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     os.Getenv("CLIENT_ID"),
		"client_secret": os.Getenv("CLIENT_SECRET"),
		"scope":         "reports",
	}
	src := tokensource.New(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		return ep.Post(ctx, body)
	}, nil, tokensource.Options{})

	first, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	second, _ := src.Token()
	fmt.Println(first.Type(), first.Extra("scope"), first == second)
	// Output: Bearer reports true
}
