package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/client/orderpay"
)

// Environment variables the simulators read secrets from (the command line is visible to every
// local user through ps and /proc, and stays in shell history).
const (
	envOrderpaySecret      = "POSGATE_ORDERPAY_AUTH_SECRET"
	envDoshiiLocationToken = "POSGATE_DOSHII_LOCATION_TOKEN"
	envDoshiiVendorKey     = "POSGATE_DOSHII_VENDOR_KEY"
)

func simulateUsage(w io.Writer) {
	fmt.Fprintf(w, `usage:
  posgate simulate orderpay-pos --url URL --outlet ID --pos-remote-id ID [--secret-file FILE] [TLS flags]
      A PowerEPOS "Order N Pay" POS: authenticates, keeps the websocket open, answers each request
      with a canned payload (0 GetUserFromPIN, 1 GetOpenOrders, 12 UpdateOrder, others a plain
      success) and prints one line per request.
      The AuthSecret comes from --secret-file (a file, or "-" for standard input) or $%s.

  posgate simulate doshii-pos --url URL (--location-token-file FILE | --vendor NAME [--vendor-key-file FILE]) [TLS flags]
      A Doshii POS socket, on-premises (a location token) or cloud (a vendor and its key): sends
      heartbeats and prints every event it receives.
      The location token comes from --location-token-file or $%s, the vendor key
      from --vendor-key-file or $%s.

  posgate simulate upstream [--addr HOST:PORT] [--config FILE] [--data-dir DIR]
      The example POS API behind posgate's gateway and chef's data calls (plain HTTP, default
      127.0.0.1:9000): checks posgate's signed identity headers and answers with what it was
      asked and who posgate says the caller is (JSON-RPC calls in chef's result envelope). It
      reads the signing key as posgate serve does: gateway.signing_secret, else the master key.

Secret files (and "-", standard input) follow posgate admin --token-file's rules: readable by
their owner only (chmod 600; a pipe such as <(pass show …) is), the secret alone, optionally
followed by a newline. --secret, --location-token and --vendor-key take the secret itself but
warn: every local user can read a process's arguments.
TLS flags: --data-dir DIR pins the self-signed certificate posgate generated there (default
./posgate-data), --ca FILE (or --cacert) trusts a PEM CA or certificate, --insecure trusts anything.
`, envOrderpaySecret, envDoshiiLocationToken, envDoshiiVendorKey)
}

func simulateMain(args []string, env Env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) == 0 {
			simulateUsage(env.Stderr)
			return 2
		}
		simulateUsage(env.Stdout)
		return 0
	}
	switch args[0] {
	case "orderpay-pos":
		return simulateOrderpay(args[1:], env)
	case "doshii-pos":
		return simulateDoshii(args[1:], env)
	case "upstream":
		return simulateUpstream(args[1:], env)
	default:
		fmt.Fprintf(env.Stderr, "posgate simulate: unknown simulator %q\n\n", args[0])
		simulateUsage(env.Stderr)
		return 2
	}
}

// simFlags are the flags both simulators share.
type simFlags struct {
	url      string
	dataDir  string
	ca       string
	insecure bool
	verbose  bool
}

// register adds the flags; their defaults are the admin CLI's environment variables when set.
func (f *simFlags) register(fs *flag.FlagSet, env Env) {
	or := func(name, def string) string {
		if v := env.Getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&f.url, "url", or(envURL, defaultURL), "base URL of posgate ($"+envURL+")")
	fs.StringVar(&f.dataDir, "data-dir", or(envDataDir, defaultData), "posgate's data dir, to pin its self-signed certificate ($"+envDataDir+")")
	fs.StringVar(&f.ca, "ca", env.Getenv(envCA), "PEM file of the CA (or self-signed certificate) to trust ($"+envCA+")")
	fs.StringVar(&f.ca, "cacert", env.Getenv(envCA), "same as --ca")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the server's TLS certificate")
	fs.BoolVar(&f.verbose, "v", false, "log connection details (never secrets)")
}

// httpClient trusts what `posgate admin` trusts (see httpClient); a certificate that does not
// match the pinned one is reported as a certificate verification error, so the clients stop at
// once instead of retrying a connection that can never be trusted.
func (f *simFlags) httpClient() (*http.Client, error) {
	if err := checkBaseURL("--url", f.url); err != nil {
		return nil, err
	}
	hc, err := httpClient(adminFlags{dataDir: f.dataDir, ca: f.ca, insecure: f.insecure})
	if err != nil {
		return nil, err
	}
	if tr, ok := hc.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil && tr.TLSClientConfig.VerifyConnection != nil {
		verify := tr.TLSClientConfig.VerifyConnection
		tr.TLSClientConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verify(cs); err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
			}
			return nil
		}
	}
	return hc, nil
}

// simSecret is a simulator's secret (see secretInput): --NAME-file FILE (or "-"), --NAME (with a
// warning), else the variable envVar.
func simSecret(what, flag, file, arg, envVar string, phrase bool) secretInput {
	return secretInput{what: what, from: "--" + flag + "-file", file: file, argIs: "--" + flag, arg: arg, env: envVar,
		safer: "--" + flag + "-file FILE (or -) or $" + envVar, phrase: phrase}
}

func simContext(env Env) (context.Context, context.CancelFunc) {
	if env.Context != nil {
		return context.WithCancel(env.Context)
	}
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func simLogger(env Env, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
}

// lineWriter serialises lines from the simulators' goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, time.Now().UTC().Format(time.RFC3339)+" "+format+"\n", a...)
}

// simFlagSet is a simulator's flag set, holding the flags every simulator takes.
func simFlagSet(name string, env Env, sf *simFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	sf.register(fs, env)
	return fs
}

// parseSim parses a simulator's arguments; when ok is false the simulator stops with code (0
// after -h, 2 for a bad flag or a stray argument).
func parseSim(fs *flag.FlagSet, args []string, env Env) (code int, ok bool) {
	if code, ok := parseFlags(fs, args, env); !ok {
		return code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// runSim runs a simulator's client until Ctrl-C (or env's context ends); a stop is a clean exit.
func runSim(env Env, name, banner string, run func(context.Context) error) int {
	ctx, stop := simContext(env)
	defer stop()
	fmt.Fprintf(env.Stderr, "%s: %s; stop with Ctrl-C\n", name, banner)
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func simulateOrderpay(args []string, env Env) int {
	const name = "posgate simulate orderpay-pos"
	var sf simFlags
	fs := simFlagSet(name, env, &sf)
	outlet := fs.String("outlet", "", "the outlet's ProviderOutletID")
	remote := fs.String("pos-remote-id", "", "the outlet's POSRemoteID")
	secretFile := fs.String("secret-file", "", `file holding the AuthSecret, or "-" for standard input (default: $`+envOrderpaySecret+`)`)
	secretArg := fs.String("secret", "", "the AuthSecret itself (visible to every local user: warns; prefer --secret-file)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s --url URL --outlet ID --pos-remote-id ID [--secret-file FILE]\n", name)
		fs.PrintDefaults()
	}
	if code, ok := parseSim(fs, args, env); !ok {
		return code
	}
	if *outlet == "" || *remote == "" {
		fmt.Fprintf(env.Stderr, "%s: --outlet and --pos-remote-id are required\n", name)
		return 2
	}
	secret, err := simSecret("AuthSecret", "secret", *secretFile, *secretArg, envOrderpaySecret, true).get(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return exitCode(err)
	}
	if secret == "" {
		fmt.Fprintf(env.Stderr, "%s: no AuthSecret: use --secret-file FILE (or -) or set $%s\n", name, envOrderpaySecret)
		return 2
	}
	hc, err := sf.httpClient()
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	out := &lineWriter{w: env.Stdout}
	c := &orderpay.Client{
		URL:         sf.url,
		Credentials: orderpay.Credentials{ProviderOutletID: *outlet, POSRemoteID: *remote, AuthSecret: secret},
		HTTPClient:  hc,
		Logger:      simLogger(env, sf.verbose),
		Handler: orderpay.HandlerFunc(func(ctx context.Context, r *orderpay.Request) orderpay.Answer {
			a := CannedOrderpayAnswer(r)
			out.printf("request %s (%s) -> ResultCode %d", r, messageTypeName(r.MessageType), a.ResultCode)
			return a
		}),
	}
	return runSim(env, name, fmt.Sprintf("outlet %s, posgate at %s", *outlet, sf.url), c.Run)
}

func messageTypeName(t int) string {
	switch t {
	case orderpay.GetUserFromPIN:
		return "GetUserFromPIN"
	case orderpay.GetOpenOrders:
		return "GetOpenOrders"
	case orderpay.UpdateOrder:
		return "UpdateOrder"
	}
	return "other"
}

// CannedOrderpayAnswer is the simulator's answer to r: plausible payloads for the documented
// message types, a plain success for the others. GetUserFromPIN with PIN "0000" finds no user
// (ResultCode 4), so an integrator can exercise that path too.
func CannedOrderpayAnswer(r *orderpay.Request) orderpay.Answer {
	var in map[string]any
	_ = json.Unmarshal(r.Payload, &in)
	switch r.MessageType {
	case orderpay.GetUserFromPIN:
		if pin, _ := in["PIN"].(string); pin == "0000" {
			return orderpay.Answer{ResultCode: 4, ErrorMessage: "no user found"}
		}
		return orderpay.Answer{Payload: map[string]any{
			"UserID": "sim-user-1", "FirstName": "Sam", "LastName": "Simulator", "Role": "Waiter",
		}}
	case orderpay.GetOpenOrders:
		return orderpay.Answer{Payload: map[string]any{"Orders": []any{
			map[string]any{"OrderID": "sim-1001", "TableNumber": "12", "Covers": 2, "Total": 27.5, "Balance": 27.5,
				"Items": []any{
					map[string]any{"ItemID": "fw", "Name": "Flat white", "Quantity": 2, "Price": 4.75},
					map[string]any{"ItemID": "eb", "Name": "Eggs benedict", "Quantity": 1, "Price": 18.0},
				}},
			map[string]any{"OrderID": "sim-1002", "TableNumber": "4", "Covers": 1, "Total": 6.0, "Balance": 0.0,
				"Items": []any{map[string]any{"ItemID": "tea", "Name": "Pot of tea", "Quantity": 1, "Price": 6.0}}},
		}}}
	case orderpay.UpdateOrder:
		id, _ := in["OrderID"].(string)
		if id == "" {
			id = "sim-1001"
		}
		return orderpay.Answer{Payload: map[string]any{"OrderID": id, "Status": "Updated"}}
	}
	return orderpay.Answer{Payload: map[string]any{"Simulated": true}}
}

func simulateDoshii(args []string, env Env) int {
	const name = "posgate simulate doshii-pos"
	var sf simFlags
	fs := simFlagSet(name, env, &sf)
	tokenFile := fs.String("location-token-file", "", `file holding the location token, or "-" for standard input (default: $`+envDoshiiLocationToken+`)`)
	tokenArg := fs.String("location-token", "", "the location token itself (visible to every local user: warns; prefer --location-token-file)")
	vendor := fs.String("vendor", "", "a cloud POS: the vendor's API name")
	keyFile := fs.String("vendor-key-file", "", `a cloud POS: file holding the vendor key, or "-" (default: $`+envDoshiiVendorKey+`)`)
	keyArg := fs.String("vendor-key", "", "the vendor key itself (visible to every local user: warns; prefer --vendor-key-file)")
	version := fs.String("version", "posgate-simulator", "POS version sent in heartbeats")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s --url URL (--location-token-file FILE | --vendor NAME [--vendor-key-file FILE])\n", name)
		fs.PrintDefaults()
	}
	if code, ok := parseSim(fs, args, env); !ok {
		return code
	}
	s := &doshii.POSSocket{URL: sf.url, Version: *version, Logger: simLogger(env, sf.verbose)}
	var err error
	if *vendor != "" {
		if *tokenFile != "" || *tokenArg != "" {
			fmt.Fprintf(env.Stderr, "%s: give a location token (on-premises POS) or --vendor (cloud POS), not both\n", name)
			return 2
		}
		s.Vendor = *vendor
		key, err := simSecret("vendor key", "vendor-key", *keyFile, *keyArg, envDoshiiVendorKey, false).get(env)
		if err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
			return exitCode(err)
		}
		s.VendorKey = doshii.NewVendorKey(key)
		if key == "" {
			fmt.Fprintf(env.Stderr, "%s: no vendor key: use --vendor-key-file FILE (or -) or set $%s\n", name, envDoshiiVendorKey)
			return 2
		}
	} else {
		if *keyFile != "" || *keyArg != "" {
			fmt.Fprintf(env.Stderr, "%s: a vendor key needs --vendor\n", name)
			return 2
		}
		if s.LocationToken, err = simSecret("location token", "location-token", *tokenFile, *tokenArg, envDoshiiLocationToken, false).get(env); err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
			return exitCode(err)
		}
		if s.LocationToken == "" {
			fmt.Fprintf(env.Stderr, "%s: no credential: use --location-token-file FILE (or -) or $%s, or --vendor with a vendor key\n", name, envDoshiiLocationToken)
			return 2
		}
	}
	if s.HTTPClient, err = sf.httpClient(); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	out := &lineWriter{w: env.Stdout}
	s.Handler = doshii.EventHandlerFunc(func(ctx context.Context, e *doshii.Event) {
		var data bytes.Buffer
		if json.Compact(&data, e.Data) != nil || data.Len() == 0 {
			data.Reset()
			data.WriteString("null")
		}
		out.printf("event id=%q type=%q location=%q data=%s", e.ID, e.Type, e.LocationID, data.String())
	})
	return runSim(env, name, "posgate at "+sf.url, s.Run)
}
