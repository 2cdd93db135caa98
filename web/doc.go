// Package web will hold Parley's browser UI: a React + TypeScript + Vite
// app in this directory, whose build output web/embed.go will embed with
// //go:embed so that the api package can serve it. A noassets build tag
// will let Go tests build and run without the built UI (and without npm).
//
// It carries embedded files only and imports no other project package.
//
// Not built yet: this package holds no app and embeds nothing.
package web
