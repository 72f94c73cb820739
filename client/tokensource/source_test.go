package tokensource_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/tokensource"
)

type clk struct{ ns atomic.Int64 }

func (c *clk) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clk) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClk() *clk {
	c := &clk{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func TestImpatientCallerDoesNotFailOthers(t *testing.T) {
	release := make(chan struct{})
	var fetchCtx atomic.Pointer[context.Context]
	src := tokensource.New(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		fetchCtx.Store(&ctx)
		select {
		case <-release:
			return &oauth2.Token{AccessToken: "a"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, nil, tokensource.Options{})
	// The patient caller starts the fetch (so it is waiting for it), then an impatient one joins
	// and gives up.
	patient := make(chan *oauth2.Token, 1)
	go func() { tok, _ := src.TokenContext(context.Background()); patient <- tok }()
	for fetchCtx.Load() == nil {
		time.Sleep(time.Millisecond) // until the fetch has started
	}
	impatient, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.TokenContext(impatient); !errors.Is(err, context.Canceled) {
		t.Fatalf("impatient caller: %v", err)
	}
	if (*fetchCtx.Load()).Err() != nil {
		t.Fatal("the fetch was cancelled while another caller waited for it")
	}
	close(release)
	if tok := <-patient; tok == nil || tok.AccessToken != "a" {
		t.Fatalf("patient caller: %v", tok)
	}
}

func TestLastWaiterLeavingCancelsTheFetch(t *testing.T) {
	ended := make(chan error, 1)
	src := tokensource.New(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	}, nil, tokensource.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := src.TokenContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller: %v", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch: %v", err)
	}
	// A fetch abandoned by everyone is not a failure: no back-off, the next call fetches.
	var calls atomic.Int64
	src2 := tokensource.New(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return &oauth2.Token{AccessToken: "b"}, nil
	}, nil, tokensource.Options{})
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	src2.TokenContext(ctx2)
	for {
		tok, err := src2.Token()
		if err == nil && tok.AccessToken == "b" {
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after an abandoned fetch: %v", err)
		}
	}
}

func TestFailedEarlyRenewalServesTheValidToken(t *testing.T) {
	c := newClk()
	var fail atomic.Bool
	var calls atomic.Int64
	src := tokensource.New(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		calls.Add(1)
		if fail.Load() {
			return nil, errors.New("network down")
		}
		return &oauth2.Token{AccessToken: "t" + time.Duration(calls.Load()).String(), Expiry: c.now().Add(time.Hour)}, nil
	}, nil, tokensource.Options{Now: c.now})
	t1, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	c.advance(time.Hour - 30*time.Second) // early window, still valid
	for range 10 {
		if tok, err := src.Token(); err != nil || tok != t1 {
			t.Fatalf("valid token not served while renewal fails: %v", err)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("%d fetches, want 2 (one failed renewal, then back-off)", calls.Load())
	}
	c.advance(31 * time.Second) // expired, back-off over
	if _, err := src.Token(); err == nil {
		t.Fatal("an expired token was served")
	}
}

func TestShortLivedTokenRenewsAtHalfLife(t *testing.T) {
	c := newClk()
	var calls atomic.Int64
	src := tokensource.New(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		calls.Add(1)
		return &oauth2.Token{AccessToken: "x", Expiry: c.now().Add(40 * time.Second)}, nil
	}, nil, tokensource.Options{Now: c.now}) // Early is 1 min, longer than the token lives
	src.Token()
	c.advance(19 * time.Second)
	src.Token()
	if calls.Load() != 1 {
		t.Fatal("renewed before half its lifetime")
	}
	c.advance(2 * time.Second)
	src.Token()
	if calls.Load() != 2 {
		t.Fatal("not renewed after half its lifetime")
	}
}

func TestInvalidate(t *testing.T) {
	var n atomic.Int64
	src := tokensource.New(func(_ context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		n.Add(1)
		rt := "r1"
		if cur != nil {
			rt = cur.RefreshToken + "+"
		}
		return &oauth2.Token{AccessToken: "a" + time.Duration(n.Load()).String(), RefreshToken: rt, Expiry: time.Now().Add(time.Hour)}, nil
	}, nil, tokensource.Options{})
	t1, _ := src.Token()
	src.Invalidate(&oauth2.Token{AccessToken: "someone else's"})
	if tok, _ := src.Token(); tok != t1 {
		t.Fatal("invalidating another token dropped the cached one")
	}
	src.Invalidate(t1)
	t2, _ := src.Token()
	if t2.AccessToken == t1.AccessToken || t2.RefreshToken != "r1+" {
		t.Fatalf("after Invalidate: %+v (the refresh token must be kept for the fetch)", t2)
	}
}

func TestTransportRetriesOnceOn401(t *testing.T) {
	var hits atomic.Int64
	var refuseAll atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if refuseAll.Load() || r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(401)
			return
		}
		w.WriteHeader(204)
	}))
	defer api.Close()
	var n atomic.Int64
	src := tokensource.New(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		if n.Add(1) == 1 {
			return &oauth2.Token{AccessToken: "stale", Expiry: time.Now().Add(time.Hour)}, nil
		}
		return &oauth2.Token{AccessToken: "good", Expiry: time.Now().Add(time.Hour)}, nil
	}, nil, tokensource.Options{})
	resp, err := tokensource.Client(src, nil).Post(api.URL, "text/plain", stringsReader("body"))
	if err != nil || resp.StatusCode != 204 || hits.Load() != 2 {
		t.Fatalf("%v %v, %d hits", resp, err, hits.Load())
	}
	resp.Body.Close()
	// Refused again, and the renewal brings the same token: the 401 comes back, no second try.
	refuseAll.Store(true)
	hits.Store(0)
	resp, err = tokensource.Client(src, nil).Get(api.URL)
	if err != nil || resp.StatusCode != 401 || hits.Load() != 1 {
		t.Fatalf("second 401: %v %v, %d hits", resp, err, hits.Load())
	}
	resp.Body.Close()
}

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	fs := tokensource.FileStore{Path: filepath.Join(dir, "t.json")}
	if tok, err := fs.Load(); tok != nil || err != nil {
		t.Fatalf("missing file: %v %v", tok, err)
	}
	want := &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Unix(1700000000, 0)}
	if err := fs.Save(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Load()
	if err != nil || got.RefreshToken != "r" || !got.Expiry.Equal(want.Expiry) {
		t.Fatalf("load: %v %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	os.Chmod(fs.Path, 0o644)
	if _, err := fs.Load(); err == nil {
		t.Fatal("a world-readable token file was accepted")
	}
}

func TestParseToken(t *testing.T) {
	now := time.Unix(1000, 0)
	tok, err := tokensource.ParseToken([]byte(`{"access_token":"a","token_type":"Bearer","expires_in":"3600","scope":"x y"}`), now)
	if err != nil || !tok.Expiry.Equal(now.Add(time.Hour)) || tok.Extra("scope") != "x y" {
		t.Fatalf("%v %v", tok, err)
	}
	for _, bad := range []string{`{}`, `{"access_token":"a","expires_in":-1}`, `{"access_token":"a","expires_in":"soon"}`, `[`} {
		if _, err := tokensource.ParseToken([]byte(bad), now); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
