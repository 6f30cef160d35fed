// Command tidemark-generate runs gqlgen with Tidemark's collection plugin:
// `go generate ./...` runs it from the module root. It derives everything a
// synced collection needs from the schema (see collectiongen and
// docs/collections.md), then generates gqlgen's executor, models and
// resolver files as `gqlgen generate` would.
package main

import (
	"fmt"
	"os"

	"github.com/99designs/gqlgen/api"
	"github.com/99designs/gqlgen/codegen/config"

	"github.com/tidemark/tidemark/collectiongen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tidemark-generate:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.LoadConfigFromDefaultLocations()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	p, err := collectiongen.New(cfg, collectiongen.DefaultPaths, logf)
	if err != nil {
		return err
	}
	if err := api.Generate(cfg, api.AddPlugin(p)); err != nil {
		return err
	}
	return p.RewriteListMarshals(cfg.Exec.Dir())
}
