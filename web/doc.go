// Package web holds Parley's browser UI: a React + TypeScript + Vite app in
// this directory (src/, built by npm into dist/), whose build output
// embed.go embeds with //go:embed so that the api package can serve it.
// Built with the noassets tag, the package embeds nothing and UI returns
// nil, so that Go tests build and run without the built UI and without npm.
//
// It carries embedded files only and imports no other project package.
package web
