// Package parley is the repository root. It holds only repository-wide
// tests, such as layering_test.go, which enforces the import rules of
// DESIGN.md; the program lives in cmd/parley and the code in the packages
// below this directory.
package parley
