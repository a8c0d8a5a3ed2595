// Command keyctl is the operator's tool for a keyquorum cluster.
package main

import (
	"os"

	"github.com/keyquorum/keyquorum/cmd/keyctl/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
