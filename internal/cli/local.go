package cli

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/keys"
)

// gatewaySigningKey prints the key the upstream verifies X-Posgate-Signature with (base64): the
// configured gateway.signing_secret, or the one derived from the master key. It reads the
// configuration and the data dir like `serve` does and never creates a master key.
func gatewaySigningKey(args []string, env Env) int {
	const name = "posgate admin gateway signing-key"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	file := fs.String("config", "", "YAML configuration file (as given to serve)")
	dataDir := fs.String("data-dir", "", "the server's data dir (master key); default as serve: $"+envDataDir+", else "+defaultData)
	if code, ok := parseFlags(fs, args, env); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return 2
	}
	flags := map[string]string{}
	if *dataDir != "" {
		flags["server.data_dir"] = *dataDir
	}
	cfg, err := config.Load(config.Options{File: *file, Environ: env.Environ, Flags: flags})
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	var master []byte
	if cfg.Gateway.SigningSecret == "" {
		if env.Getenv("POSGATE_MASTER_KEY") == "" {
			if _, err := os.Stat(filepath.Join(cfg.Server.DataDir, "master.key")); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(env.Stderr, "%s: no master key in %s (point --data-dir at the server's data dir)\n", name, cfg.Server.DataDir)
				return 1
			}
		}
		if master, err = keys.LoadMasterKey(cfg.Server.DataDir); err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
			return 1
		}
	}
	key, err := gateway.SigningKey(cfg, master)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Fprintln(env.Stdout, base64.StdEncoding.EncodeToString(key))
	return 0
}
