// Command posgate is one authentication server for five POS dialects. See README.md.
package main

import (
	"os"

	"github.com/posgate/posgate/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
