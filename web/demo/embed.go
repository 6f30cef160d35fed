// Package demo embeds the built demo app (web/demo/dist, made by
// `npm --prefix web/demo ci && npm --prefix web/demo run build`), so the
// tidemark binary serves it at /demo with no Node.js on the machine.
package demo

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Assets returns the built app: index.html at its root, hashed files under
// assets/.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path; fs.Sub fails only on invalid ones
	}
	return sub
}
