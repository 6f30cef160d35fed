// Package playground holds Tidemark's Playground, GraphiQL built with Vite
// from src/ into dist/ (`npm ci && npm run build` here), so that the binary
// serves it with no CDN and no Node.js. server/playground.go serves it.
package playground

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Files returns the built Playground: index.html and assets/.
func Files() fs.FS {
	files, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path; fs.Sub fails only on invalid ones
	}
	return files
}
