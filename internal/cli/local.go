package cli

import (
	"encoding/base64"
	"flag"
	"fmt"

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
	key, err := upstreamSigningKey(*file, *dataDir, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Fprintln(env.Stdout, base64.StdEncoding.EncodeToString(key))
	return 0
}

// upstreamSigningKey is the key an upstream verifies X-Posgate-Signature with, read as `serve`
// reads it (configuration file, environment, data dir): the configured gateway.signing_secret,
// or the key derived from the master key. It never creates a master key: a tool beside posgate
// must not invent a deployment's root secret.
func upstreamSigningKey(file, dataDir string, env Env) ([]byte, error) {
	flags := map[string]string{}
	if dataDir != "" {
		flags["server.data_dir"] = dataDir
	}
	cfg, err := config.Load(config.Options{File: file, Environ: env.Environ, Flags: flags})
	if err != nil {
		return nil, err
	}
	var master []byte
	if cfg.Gateway.SigningSecret == "" {
		if master, err = keys.ReadMasterKey(cfg.Server.DataDir); err != nil {
			return nil, fmt.Errorf("no master key in %s (%v): the identity signature key comes from it; start posgate first, or point --data-dir at its data directory", cfg.Server.DataDir, err)
		}
	}
	return gateway.SigningKey(cfg, master)
}
