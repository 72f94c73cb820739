// Package cli is posgate's command line: `serve`, `admin …` (a client of the admin API), `token …`
// (the client SDK from a shell) and `version`. cmd/posgate only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server"
)

// Env is what a command runs with; Main uses the process's.
type Env struct {
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Getenv  func(string) string
	Environ []string
	// Context, when set, stops `serve` when cancelled (tests); otherwise SIGINT/SIGTERM do.
	Context context.Context
}

// Main runs the command line args (without the program name) and returns the exit code:
// 0 success, 1 failure, 2 usage error.
func Main(args []string) int {
	return Run(args, Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Environ: os.Environ()})
}

// Run is Main with an explicit environment.
func Run(args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if len(args) == 0 {
		usage(env.Stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], env)
	case "admin":
		return adminMain(args[1:], env)
	case "simulate":
		return simulateMain(args[1:], env)
	case "token":
		return tokenMain(args[1:], env)
	case "version", "--version", "-version":
		fmt.Fprintln(env.Stdout, "posgate", Version())
		return 0
	case "help", "-h", "--help", "-help":
		usage(env.Stdout)
		return 0
	default:
		fmt.Fprintf(env.Stderr, "posgate: unknown command %q\n\n", args[0])
		usage(env.Stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `posgate — one authentication server for five POS dialects

usage:
  posgate serve [--config FILE] [--data-dir DIR] [--addr HOST:PORT] [--http-addr HOST:PORT] [--demo]
  posgate admin <resource> <verb> [ARGS] [--url URL] [--token-file FILE] [-o json|table]
  posgate simulate orderpay-pos|doshii-pos [flags]   (a POS on the other end of posgate's websockets)
  posgate simulate upstream [flags]   (the example POS API behind the gateway and chef's data calls)
  posgate token <dialect> [flags]   (a token or a signed credential, as each dialect's client gets it)
  posgate version

Run "posgate admin help" for the admin commands, docs/configuration.md for every setting.
`)
}

// version is the release version, stamped at build time:
//
//	go build -ldflags "-X github.com/posgate/posgate/internal/cli.version=v1.2.3" ./cmd/posgate
//
// Empty in a plain build, where Version falls back to the module version.
var version string

// Version says which posgate this is: the stamped release version (or the module version,
// "(devel)" for a build from a checkout), the VCS revision and commit time the binary was built
// from when the build recorded them, and the Go version.
func Version() string {
	return describeVersion(version, debug.ReadBuildInfo)
}

func describeVersion(stamped string, read func() (*debug.BuildInfo, bool)) string {
	bi, ok := read()
	if !ok {
		if stamped != "" {
			return stamped
		}
		return "(unknown)"
	}
	v := stamped
	if v == "" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
		if at != "" {
			v += " " + at
		}
	}
	return v + " " + bi.GoVersion
}

func serve(args []string, env Env) int {
	fs := flag.NewFlagSet("posgate serve", flag.ContinueOnError)
	file := fs.String("config", "", "YAML configuration file")
	dataDir := fs.String("data-dir", "", "data directory (master key, admin token, certificate, SQLite file); default ./posgate-data")
	addr := fs.String("addr", "", "HTTPS listen address; default :8443")
	httpAddr := fs.String("http-addr", "", "plain-HTTP listen address (turns HTTPS off unless --addr is given too)")
	demo := fs.Bool("demo", false, "seed one example credential set per dialect and print curl lines")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: posgate serve [flags]\n  Every setting can also come from the config file or a POSGATE_<SECTION>_<KEY> variable\n  (flags win over the environment, which wins over the file); see docs/configuration.md.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, env); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "posgate serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	flags := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data-dir":
			flags["server.data_dir"] = *dataDir
		case "addr":
			flags["server.addr"] = *addr
		case "http-addr":
			flags["server.http_addr"] = *httpAddr
		}
	})
	cfg, err := config.Load(config.Options{File: *file, Environ: env.Environ, Flags: flags})
	if err != nil {
		fmt.Fprintf(env.Stderr, "posgate: %v\n", err)
		return 1
	}
	ctx := env.Context
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	server.TuneRuntime(cfg, env.Getenv)
	srv, err := server.New(ctx, server.Options{Config: cfg, Out: env.Stdout, Getenv: env.Getenv, Demo: *demo,
		Log: server.NewLogger(env.Stderr, cfg.Server.LogLevel)})
	if err != nil {
		fmt.Fprintf(env.Stderr, "posgate: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.Stdout, "posgate: serving on %s (admin API %s%s)\n", listening(srv), srv.BaseURL(), server.AdminPrefix)
	if err := srv.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.Stderr, "posgate: %v\n", err)
		return 1
	}
	return 0
}

func listening(s *server.Server) string {
	var parts []string
	for _, u := range []string{s.HTTPSURL(), s.HTTPURL()} {
		if u != "" {
			parts = append(parts, u)
		}
	}
	return strings.Join(parts, " and ")
}
