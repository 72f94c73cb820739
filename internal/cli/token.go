package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/chef"
	"github.com/posgate/posgate/client/chimpy"
	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/client/jackpot"
	"github.com/posgate/posgate/client/tokensource"
)

// tokenMain is `posgate token <dialect> …`: get a token, or sign a credential, as each dialect's
// client does, with the SDK under client/, for debugging an integration from a shell.
func tokenMain(args []string, env Env) int {
	if code, done := helpAsked(args, env, tokenUsage); done {
		return code
	}
	cmd, ok := tokenCommands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "posgate token: unknown dialect %q\n\n", args[0])
		tokenUsage(env.Stderr)
		return 2
	}
	fs := flag.NewFlagSet("posgate token "+args[0], flag.ContinueOnError)
	tf := &tokenFlags{}
	cmd.flags(fs, tf)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: posgate token %s [flags]\n%s\n\n%s\n\nflags:\n", args[0], cmd.help, secretsNote)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args[1:], env); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "posgate token %s: unexpected argument %q (secrets come from files or the environment, never the command line)\n", args[0], fs.Arg(0))
		return 2
	}
	ctx := env.Context
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	if err := cmd.run(ctx, tf, env); err != nil {
		fmt.Fprintf(env.Stderr, "posgate token %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

const secretsNote = `Secrets are read from a file (--…-file FILE, "-" for standard input) or from the environment
variable named in each flag's help — never from the command line, where every local user can
read them (ps, /proc/<pid>/cmdline) and the shell history keeps them. A file must be readable by
its owner only (chmod 600; a pipe such as <(pass show …) is) and hold the secret alone, optionally
followed by a newline.`

type tokenFlags struct {
	url, ca                   string
	insecure                  bool
	clientID, audience        string
	scope, username           string
	clientSecretFile          string
	passwordFile              string
	apiKeyFile, apiSigFile    string
	amount                    float64
	notificationKey, userID   string
	vendorKeyFile, locTokFile string
	vendor                    string
	at                        int64
	deviceID, deviceName      string
	userAgent, tokenFile      string
}

type tokenCommand struct {
	help  string
	flags func(*flag.FlagSet, *tokenFlags)
	run   func(context.Context, *tokenFlags, Env) error
}

func tlsFlags(fs *flag.FlagSet, tf *tokenFlags) {
	fs.StringVar(&tf.ca, "ca", "", "PEM file of the CA (or self-signed certificate) to trust")
	fs.BoolVar(&tf.insecure, "insecure", false, "do not verify the server's TLS certificate")
}

// jackpotFlags are the flags both jackpot grants take before their own.
func jackpotFlags(fs *flag.FlagSet, tf *tokenFlags) {
	fs.StringVar(&tf.url, "url", "", "the API's base URL, e.g. https://posgate.example (required)")
	fs.StringVar(&tf.apiKeyFile, "api-key-file", "", "file holding the API key (else $POSGATE_JACKPOT_API_KEY)")
}

var tokenCommands = map[string]tokenCommand{
	"chimpy": {
		help: "Sign in with the password grant (JSON, as chimpy documents) and print the token answer.",
		flags: func(fs *flag.FlagSet, tf *tokenFlags) {
			fs.StringVar(&tf.url, "url", "", "token endpoint, e.g. https://posgate.example/oauth/token (required)")
			fs.StringVar(&tf.clientID, "client-id", "", "client_id (required)")
			fs.StringVar(&tf.clientSecretFile, "client-secret-file", "", "file holding the client secret (else $POSGATE_CLIENT_SECRET; none for a public client)")
			fs.StringVar(&tf.username, "username", "", "the user (required)")
			fs.StringVar(&tf.passwordFile, "password-file", "", `file holding the password, "-" for standard input (else $POSGATE_PASSWORD)`)
			fs.StringVar(&tf.audience, "audience", "", "the API's audience")
			fs.StringVar(&tf.scope, "scope", "", `space-separated scopes ("offline_access" for a refresh token)`)
			fs.StringVar(&tf.tokenFile, "save", "", "also save the token (with its refresh token) to this file, mode 0600")
			tlsFlags(fs, tf)
		},
		run: runChimpy,
	},
	"jackpot-session": {
		help: "Sign a jwt-bearer assertion (HS256 with the API signature) and exchange it at /v2/token.",
		flags: func(fs *flag.FlagSet, tf *tokenFlags) {
			jackpotFlags(fs, tf)
			fs.StringVar(&tf.apiSigFile, "api-signature-file", "", "file holding the API signature (else $POSGATE_JACKPOT_API_SIGNATURE)")
			fs.Float64Var(&tf.amount, "amount", 0, "the most the session may spend (required)")
			fs.StringVar(&tf.notificationKey, "notification-key", "", "the transaction's unique key (default: a random one)")
			fs.StringVar(&tf.userID, "user-id", "", "userId claim")
			tlsFlags(fs, tf)
		},
		run: runJackpotSession,
	},
	"jackpot-m2m": {
		help: "Get a machine-to-machine token (client_credentials) at /v2/token.",
		flags: func(fs *flag.FlagSet, tf *tokenFlags) {
			jackpotFlags(fs, tf)
			fs.StringVar(&tf.clientSecretFile, "client-secret-file", "", "file holding the client secret (else $POSGATE_CLIENT_SECRET)")
			tlsFlags(fs, tf)
		},
		run: runJackpotM2M,
	},
	"doshii-jwt": {
		help: "Print a location JWT (HS256 with the vendor key over {locationToken, timestamp}), or with\n--vendor a cloud POS's vendor JWT. Nothing is sent.",
		flags: func(fs *flag.FlagSet, tf *tokenFlags) {
			fs.StringVar(&tf.vendorKeyFile, "vendor-key-file", "", "file holding the vendor key (else $POSGATE_DOSHII_VENDOR_KEY)")
			fs.StringVar(&tf.locTokFile, "location-token-file", "", "file holding the location token (else $POSGATE_DOSHII_LOCATION_TOKEN)")
			fs.StringVar(&tf.vendor, "vendor", "", "sign the vendor JWT {vendor, timestamp} for this API name instead")
			fs.Int64Var(&tf.at, "timestamp", 0, "epoch seconds to sign (default: now)")
		},
		run: runDoshiiJWT,
	},
	"chef": {
		help: "Pair a device (authenticateClient; waits until a person approves it, asking again after\neach 56) or renew its saved token, and print the token.",
		flags: func(fs *flag.FlagSet, tf *tokenFlags) {
			fs.StringVar(&tf.url, "url", "", "JSON-RPC endpoint, e.g. https://posgate.example/api/json-rpc/v1 (required)")
			fs.StringVar(&tf.deviceID, "device-id", "", "the device's id (required)")
			fs.StringVar(&tf.deviceName, "device-name", "", "the label a person sees when approving")
			fs.StringVar(&tf.userAgent, "user-agent", "posgate-token", "User-Agent (an approval is bound to it)")
			fs.StringVar(&tf.tokenFile, "token-file", "", "keep the device token in this file (mode 0600): renewed from it, saved to it")
			tlsFlags(fs, tf)
		},
		run: runChef,
	},
}

func tokenUsage(w io.Writer) {
	fmt.Fprint(w, `usage: posgate token <dialect> [flags]   (posgate token <dialect> -h for its flags)

  chimpy            password grant at /oauth/token; prints the token answer
  jackpot-session   signed assertion exchanged at /v2/token; prints the session token
  jackpot-m2m       client_credentials at /v2/token; prints the token
  doshii-jwt        prints a location (or vendor) JWT signed with the vendor key
  chef              pairs a device (waits for approval) or renews it; prints the token

`+secretsNote+"\n")
}

// secret reads a secret from its file flag ("-" is standard input; see readSecret), else from
// the environment variable name. what names it in messages; a password may hold spaces.
func secret(env Env, file, flag, name, what string, required bool) (string, error) {
	v, err := secretInput{what: what, from: "--" + flag, file: file, env: name, phrase: what == "password"}.get(env)
	if v == "" && err == nil && required {
		return "", fmt.Errorf("no %s: set $%s or pass --%s FILE", what, name, flag)
	}
	return v, err
}

func need(vals ...string) error {
	for i := 0; i+1 < len(vals); i += 2 {
		if vals[i+1] == "" {
			return fmt.Errorf("--%s is required", vals[i])
		}
	}
	return nil
}

func (tf *tokenFlags) httpClient(timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	switch {
	case tf.insecure:
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	case tf.ca != "":
		pool, err := caPool(tf.ca)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

func printToken(w io.Writer, tok *oauth2.Token) error {
	out := map[string]any{"access_token": tok.AccessToken, "token_type": tok.Type()}
	if tok.RefreshToken != "" {
		out["refresh_token"] = tok.RefreshToken
	}
	if !tok.Expiry.IsZero() {
		out["expiry"] = tok.Expiry.UTC().Format(time.RFC3339)
	}
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		out["scope"] = s
	}
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}

func runChimpy(ctx context.Context, tf *tokenFlags, env Env) error {
	if err := need("url", tf.url, "client-id", tf.clientID, "username", tf.username); err != nil {
		return err
	}
	cs, err := secret(env, tf.clientSecretFile, "client-secret-file", "POSGATE_CLIENT_SECRET", "client secret", false)
	if err != nil {
		return err
	}
	pw, err := secret(env, tf.passwordFile, "password-file", "POSGATE_PASSWORD", "password", true)
	if err != nil {
		return err
	}
	hc, err := tf.httpClient(30 * time.Second)
	if err != nil {
		return err
	}
	cfg := chimpy.Config{TokenURL: tf.url, ClientID: tf.clientID, ClientSecret: cs, Audience: tf.audience,
		Scopes: strings.Fields(tf.scope), Username: tf.username, Password: pw, HTTPClient: hc}
	if tf.tokenFile != "" {
		cfg.Persist = tokensource.FileStore{Path: tf.tokenFile}.Save
	}
	tok, err := cfg.TokenSource(ctx).TokenContext(ctx)
	if err != nil {
		return err
	}
	return printToken(env.Stdout, tok)
}

// jackpotInputs reads what both jackpot grants need, in the order their errors are reported: the
// base URL, the API key, the grant's own secret (file, else environment variable name) and an
// HTTP client.
func jackpotInputs(env Env, tf *tokenFlags, file, flag, name, what string) (key, second string, hc *http.Client, err error) {
	if err = need("url", tf.url); err != nil {
		return "", "", nil, err
	}
	if key, err = secret(env, tf.apiKeyFile, "api-key-file", "POSGATE_JACKPOT_API_KEY", "API key", true); err != nil {
		return "", "", nil, err
	}
	if second, err = secret(env, file, flag, name, what, true); err != nil {
		return "", "", nil, err
	}
	if hc, err = tf.httpClient(30 * time.Second); err != nil {
		return "", "", nil, err
	}
	return key, second, hc, nil
}

func runJackpotSession(ctx context.Context, tf *tokenFlags, env Env) error {
	key, sig, hc, err := jackpotInputs(env, tf, tf.apiSigFile, "api-signature-file", "POSGATE_JACKPOT_API_SIGNATURE", "API signature")
	if err != nil {
		return err
	}
	cfg := jackpot.Config{BaseURL: tf.url, APIKey: key, APISignature: []byte(sig), HTTPClient: hc, Skew: new(tokensource.Skew)}
	s, err := cfg.NewSession(ctx, jackpot.SessionRequest{Amount: tf.amount, NotificationKey: tf.notificationKey, UserID: tf.userID})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "notificationKey %s; the token pays for one reservation\n", s.NotificationKey)
	return printToken(env.Stdout, s.Token)
}

func runJackpotM2M(ctx context.Context, tf *tokenFlags, env Env) error {
	key, cs, hc, err := jackpotInputs(env, tf, tf.clientSecretFile, "client-secret-file", "POSGATE_CLIENT_SECRET", "client secret")
	if err != nil {
		return err
	}
	tok, err := jackpot.Config{BaseURL: tf.url, APIKey: key, ClientSecret: cs, HTTPClient: hc}.M2M(ctx).TokenContext(ctx)
	if err != nil {
		return err
	}
	return printToken(env.Stdout, tok)
}

func runDoshiiJWT(_ context.Context, tf *tokenFlags, env Env) error {
	vk, err := secret(env, tf.vendorKeyFile, "vendor-key-file", "POSGATE_DOSHII_VENDOR_KEY", "vendor key", true)
	if err != nil {
		return err
	}
	at := time.Now()
	if tf.at != 0 {
		at = time.Unix(tf.at, 0)
	}
	k := doshii.NewVendorKey(vk)
	var jwt string
	if tf.vendor != "" {
		jwt, err = k.SignVendor(tf.vendor, at)
	} else {
		var lt string
		if lt, err = secret(env, tf.locTokFile, "location-token-file", "POSGATE_DOSHII_LOCATION_TOKEN", "location token", true); err != nil {
			return err
		}
		jwt, err = k.SignLocation(lt, at)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(env.Stdout, jwt)
	return err
}

func runChef(ctx context.Context, tf *tokenFlags, env Env) error {
	if err := need("url", tf.url, "device-id", tf.deviceID); err != nil {
		return err
	}
	hc, err := tf.httpClient(chef.DefaultTimeout)
	if err != nil {
		return err
	}
	cfg := chef.Config{Endpoint: tf.url, DeviceID: tf.deviceID, DeviceName: tf.deviceName, UserAgent: tf.userAgent, HTTPClient: hc}
	if tf.tokenFile != "" {
		store := tokensource.FileStore{Path: tf.tokenFile}
		if cfg.Token, err = store.Load(); err != nil {
			return err
		}
		cfg.Persist = store.Save
	}
	if cfg.Token == nil {
		fmt.Fprintln(env.Stderr, "waiting for a person to approve the device (Ctrl-C to stop)…")
	}
	tok, err := chef.New(ctx, cfg).TokenContext(ctx)
	if err != nil {
		return err
	}
	return printToken(env.Stdout, tok)
}
