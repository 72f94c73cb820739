package tokensource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// maxAnswer caps a token endpoint's answer; a token answer is a few KiB.
const maxAnswer = 1 << 20

// Endpoint is a token endpoint that takes a JSON body, as Auth0-style servers (chimpy) and
// jackpot's /v2/token do; x/oauth2 can only send forms.
type Endpoint struct {
	URL string
	// Client sends the request; nil means the oauth2.HTTPClient of the context, else
	// http.DefaultClient.
	Client *http.Client
	// Now stamps the token's Expiry from expires_in (time.Now).
	Now func() time.Time
}

// Post sends body as JSON and decodes an RFC 6749 §5.1 answer. A refusal is an
// *oauth2.RetrieveError carrying the server's error and error_description (its Response has the
// headers, Retry-After included); use errors.As to read them.
func (e Endpoint) Post(ctx context.Context, body any) (*oauth2.Token, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	c := e.Client
	if c == nil {
		if hc, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
			c = hc
		} else {
			c = http.DefaultClient
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("token endpoint: reading the answer: %w", err)
	}
	if len(raw) > maxAnswer {
		return nil, errors.New("token endpoint: answer too large")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		re := &oauth2.RetrieveError{Response: resp, Body: raw}
		var eb struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			URI         string `json:"error_uri"`
		}
		if json.Unmarshal(raw, &eb) == nil {
			re.ErrorCode, re.ErrorDescription, re.ErrorURI = eb.Error, eb.Description, eb.URI
		}
		return nil, re
	}
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	return ParseToken(raw, now())
}

// ParseToken decodes an RFC 6749 §5.1 token answer received at now. expires_in may be a number
// or a string holding one (some servers send that); the whole answer is kept as the token's
// extra values (tok.Extra("scope")).
func ParseToken(raw []byte, now time.Time) (*oauth2.Token, error) {
	var a struct {
		AccessToken  string      `json:"access_token"`
		TokenType    string      `json:"token_type"`
		RefreshToken string      `json:"refresh_token"`
		ExpiresIn    json.Number `json:"expires_in"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&a); err != nil {
		return nil, fmt.Errorf("token endpoint: the answer is not a token: %w", err)
	}
	if a.AccessToken == "" {
		return nil, errors.New("token endpoint: the answer has no access_token")
	}
	tok := &oauth2.Token{AccessToken: a.AccessToken, TokenType: a.TokenType, RefreshToken: a.RefreshToken}
	if a.ExpiresIn != "" {
		secs, err := strconv.ParseInt(strings.TrimSuffix(a.ExpiresIn.String(), ".0"), 10, 64)
		if err != nil || secs < 0 {
			return nil, fmt.Errorf("token endpoint: bad expires_in %q", a.ExpiresIn)
		}
		if secs > 0 {
			tok.ExpiresIn = secs
			tok.Expiry = now.Add(time.Duration(secs) * time.Second)
		}
	}
	var extra map[string]any
	if json.Unmarshal(raw, &extra) == nil {
		tok = tok.WithExtra(extra)
	}
	return tok, nil
}

// RetryAfter is the wait a refusal asks for: the Retry-After header (seconds or an HTTP date) of
// an *oauth2.RetrieveError's response, or of an error with a RetryAfter method; 0 otherwise.
func RetryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return 0
	}
	return ParseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now())
}

// ParseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3) relative to now.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// ErrorCode is the OAuth error code of err ("invalid_grant", …) when it carries one.
func ErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}
