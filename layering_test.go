package parley

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// mod is the module path; rule patterns below are full import paths.
const mod = "github.com/parley-chat/parley"

// layerRule is one row of the import rules of DESIGN.md, "Dependency
// direction". Rules apply to every transitive dependency of a package's
// non-test build (go list -deps), so a layer cannot reach a forbidden one
// through a third package either.
type layerRule struct {
	// pkgs selects the project packages the rule governs ("x/..." also
	// matches x itself).
	pkgs string
	// onlyProject, when non-nil, lists the only project packages they may
	// depend on; any other package of this module is a violation.
	onlyProject []string
	// badDeps maps a forbidden dependency pattern to the reason, in the
	// style of tailscale's deptest.DepChecker.BadDeps.
	badDeps map[string]string
}

const (
	libp2p = "github.com/libp2p/..."
	badger = "github.com/dgraph-io/badger/..."
)

// layerRules is the diagram of DESIGN.md as data.
var layerRules = []layerRule{
	{
		pkgs:        mod + "/protocol/...",
		onlyProject: []string{mod + "/protocol/..."},
		badDeps: map[string]string{
			libp2p: "protocol is pure: wire formats and crypto, no network",
			badger: "protocol is pure: wire formats and crypto, no disk",
		},
	},
	{
		pkgs:        mod + "/store/...",
		onlyProject: []string{mod + "/store/...", mod + "/protocol/..."},
		badDeps: map[string]string{
			libp2p: "store knows nothing of libp2p",
		},
	},
	{
		pkgs:        mod + "/directory/...",
		onlyProject: []string{mod + "/directory/...", mod + "/protocol/...", mod + "/internal/promreg"},
	},
	{
		pkgs: mod + "/api/...",
		badDeps: map[string]string{
			mod + "/node/...":      "api declares the node methods it needs as its own interface",
			mod + "/store/...":     "api talks to the node through its own interface, not to storage",
			mod + "/directory/...": "api talks to the node through its own interface, not to the DHT",
			libp2p:                 "api never touches the network layer",
			badger:                 "api never touches the database",
		},
	},
	{
		// A part of the node with its own protocol and database: the
		// relay serves it and the node uses its client, so it cannot
		// reach back into either, nor into the node's store.
		pkgs:        mod + "/node/mailbox/...",
		onlyProject: []string{mod + "/node/mailbox/...", mod + "/directory/...", mod + "/protocol/...", mod + "/internal/promreg", mod + "/internal/relaydb", mod + "/internal/streamgate"},
	},
	{
		// The group relay: served by the relay, its client used by the
		// node; like the mailbox, it reaches into neither.
		pkgs:        mod + "/node/grouprelay/...",
		onlyProject: []string{mod + "/node/grouprelay/...", mod + "/protocol/...", mod + "/internal/promreg", mod + "/internal/relaydb", mod + "/internal/streamgate"},
	},
	{
		pkgs: mod + "/node/...",
		badDeps: map[string]string{
			mod + "/api/...": "only cmd/parley wires node to api",
			mod + "/web/...": "only cmd/parley wires in the embedded UI",
		},
	},
	{
		pkgs:        mod + "/web/...",
		onlyProject: []string{mod + "/web/..."},
	},
	{
		pkgs: mod + "/...",
		badDeps: map[string]string{
			mod + "/cmd/parley/...": "cmd/parley is the top of the diagram; nothing imports it",
		},
	},
}

// listedPackage holds the fields of `go list -json` the checker reads.
type listedPackage struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }
}

// violation is one forbidden dependency, with the import chain that leads
// to it.
type violation struct {
	pkg, dep, reason string
	chain            []string
}

func (v violation) String() string {
	chain := make([]string, len(v.chain))
	for i, p := range v.chain {
		chain[i] = short(p)
	}
	return fmt.Sprintf("%s imports %s (%s): %s", short(v.pkg), short(v.dep), strings.Join(chain, " -> "), v.reason)
}

// short drops the module path from the import path of a package below the
// module root, for readable reports.
func short(path string) string {
	if rest, ok := strings.CutPrefix(path, mod+"/"); ok {
		return rest
	}
	return path
}

// matchPattern reports whether path matches pattern, where "x/..." matches
// x and every package below it.
func matchPattern(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return path == pattern
}

func inModule(path string) bool { return matchPattern(mod+"/...", path) }

// checkLayers returns every dependency in pkgs that breaks one of rules.
func checkLayers(pkgs []listedPackage, rules []layerRule) []violation {
	byPath := make(map[string]*listedPackage, len(pkgs))
	for i := range pkgs {
		byPath[pkgs[i].ImportPath] = &pkgs[i]
	}
	var out []violation
	for _, p := range pkgs {
		if p.Standard || !inModule(p.ImportPath) {
			continue
		}
		for _, r := range rules {
			if !matchPattern(r.pkgs, p.ImportPath) {
				continue
			}
			for _, dep := range p.Deps {
				reason := ""
				if r.onlyProject != nil && inModule(dep) &&
					!slices.ContainsFunc(r.onlyProject, func(allowed string) bool { return matchPattern(allowed, dep) }) {
					allowed := make([]string, len(r.onlyProject))
					for i, a := range r.onlyProject {
						allowed[i] = short(a)
					}
					reason = fmt.Sprintf("%s may import only %s among project packages", short(r.pkgs), strings.Join(allowed, ", "))
				}
				for bad, why := range r.badDeps {
					if matchPattern(bad, dep) {
						reason = why
						break
					}
				}
				if reason != "" {
					out = append(out, violation{pkg: p.ImportPath, dep: dep, reason: reason, chain: importChain(byPath, p.ImportPath, dep)})
				}
			}
		}
	}
	return out
}

// importChain returns a shortest chain of direct imports from -> ... -> to,
// or just [from, to] when the listing does not show one.
func importChain(byPath map[string]*listedPackage, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var chain []string
			for p := to; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		if lp := byPath[cur]; lp != nil {
			for _, next := range lp.Imports {
				if _, seen := prev[next]; !seen {
					prev[next] = cur
					queue = append(queue, next)
				}
			}
		}
	}
	return []string{from, to}
}

// goTool finds the go command: on PATH (go test puts its own GOROOT/bin
// first), else in runtime.GOROOT()/bin.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("go command not on PATH and not at %s: %v", p, err)
	}
	return p
}

// goListDeps runs go list -e -deps over the whole module with the given
// build tags and decodes its output.
func goListDeps(t *testing.T, tags string) []listedPackage {
	t.Helper()
	args := []string{"list", "-e", "-deps", "-json=ImportPath,Standard,Imports,Deps,Error,DepsErrors"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./...")
	cmd := exec.Command(goTool(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// hasGoFiles reports whether dir or any directory below it holds a .go file.
func hasGoFiles(t *testing.T, dir string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("looking for Go files in %s: %v", dir, err)
	}
	return found
}

func TestLayering(t *testing.T) {
	// The default build, and the build Go tests use before the UI exists.
	for _, tags := range []string{"", "noassets"} {
		t.Run("tags="+tags, func(t *testing.T) {
			pkgs := goListDeps(t, tags)
			var project []string
			for _, p := range pkgs {
				if p.Standard || !inModule(p.ImportPath) {
					continue
				}
				project = append(project, p.ImportPath)
				// go list -e reports broken packages instead of failing; their
				// imports may be incomplete, so say so (go vet and the build fail
				// on them anyway) and check what could be read.
				if p.Error != nil {
					t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
				}
				for _, e := range p.DepsErrors {
					t.Logf("go list: %s: dependency error: %s", p.ImportPath, e.Err)
				}
			}
			if !slices.Contains(project, mod+"/cmd/parley") {
				t.Fatalf("go list did not list %s/cmd/parley; listed %q", mod, project)
			}
			for _, r := range layerRules {
				if slices.ContainsFunc(project, func(p string) bool { return matchPattern(r.pkgs, p) }) {
					continue
				}
				dir := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(r.pkgs, mod), "/"), "/...")
				if !hasGoFiles(t, dir) {
					t.Logf("rule for %s governs no package: %s/ holds no Go files yet", r.pkgs, dir)
					continue
				}
				t.Errorf("rule for %s governs no package, though %s/ holds Go files: is the pattern wrong?", r.pkgs, dir)
			}
			for _, v := range checkLayers(pkgs, layerRules) {
				t.Error(v)
			}
		})
	}
}

// TestLayeringCatchesViolations feeds the checker a made-up graph that breaks
// the rules, so that TestLayering is known to be able to fail.
func TestLayeringCatchesViolations(t *testing.T) {
	pkgs := []listedPackage{
		{ImportPath: "fmt", Standard: true},
		{ImportPath: mod + "/protocol", Imports: []string{"fmt", mod + "/protocol/pb"}, Deps: []string{"fmt", mod + "/protocol/pb"}},
		{ImportPath: mod + "/protocol/pb"},
		// store reaches libp2p through a third-party package.
		{ImportPath: mod + "/store", Imports: []string{mod + "/protocol", "example.com/helper"},
			Deps: []string{"example.com/helper", "fmt", "github.com/libp2p/go-libp2p/core/peer", mod + "/protocol", mod + "/protocol/pb"}},
		{ImportPath: "example.com/helper", Imports: []string{"github.com/libp2p/go-libp2p/core/peer"}, Deps: []string{"github.com/libp2p/go-libp2p/core/peer"}},
		{ImportPath: "github.com/libp2p/go-libp2p/core/peer"},
		// api imports store directly.
		{ImportPath: mod + "/api", Imports: []string{mod + "/store"},
			Deps: []string{"example.com/helper", "fmt", "github.com/libp2p/go-libp2p/core/peer", mod + "/protocol", mod + "/protocol/pb", mod + "/store"}},
		// directory imports store.
		{ImportPath: mod + "/directory", Imports: []string{mod + "/store"},
			Deps: []string{"example.com/helper", "fmt", "github.com/libp2p/go-libp2p/core/peer", mod + "/protocol", mod + "/protocol/pb", mod + "/store"}},
		// node imports web; cmd/parley imports node (allowed).
		{ImportPath: mod + "/web"},
		{ImportPath: mod + "/node", Imports: []string{mod + "/web"}, Deps: []string{mod + "/web"}},
		{ImportPath: mod + "/cmd/parley", Imports: []string{mod + "/node"}, Deps: []string{mod + "/node", mod + "/web"}},
	}
	var got []string
	for _, v := range checkLayers(pkgs, layerRules) {
		got = append(got, v.String())
	}
	want := []string{
		"store imports github.com/libp2p/go-libp2p/core/peer (store -> example.com/helper -> github.com/libp2p/go-libp2p/core/peer): store knows nothing of libp2p",
		"api imports github.com/libp2p/go-libp2p/core/peer (api -> store -> example.com/helper -> github.com/libp2p/go-libp2p/core/peer): api never touches the network layer",
		"api imports store (api -> store): api talks to the node through its own interface, not to storage",
		"directory imports store (directory -> store): directory/... may import only directory/..., protocol/..., internal/promreg among project packages",
		"node imports web (node -> web): only cmd/parley wires in the embedded UI",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	// One more for each rule that the graph above does not exercise.
	more := []struct {
		pkg  listedPackage
		want string
	}{
		{listedPackage{ImportPath: mod + "/protocol", Deps: []string{mod + "/store"}}, "may import only"},
		{listedPackage{ImportPath: mod + "/protocol/pb", Deps: []string{"github.com/dgraph-io/badger/v4"}}, "no disk"},
		{listedPackage{ImportPath: mod + "/store", Deps: []string{mod + "/directory"}}, "may import only"},
		{listedPackage{ImportPath: mod + "/api", Deps: []string{mod + "/node"}}, "own interface"},
		{listedPackage{ImportPath: mod + "/api/v1", Deps: []string{"github.com/dgraph-io/badger/v4/options"}}, "never touches the database"},
		{listedPackage{ImportPath: mod + "/node/services", Deps: []string{mod + "/api"}}, "only cmd/parley wires node to api"},
		{listedPackage{ImportPath: mod + "/node/mailbox", Deps: []string{mod + "/store"}}, "may import only"},
		{listedPackage{ImportPath: mod + "/node/grouprelay", Deps: []string{mod + "/node"}}, "may import only"},
		{listedPackage{ImportPath: mod + "/web", Deps: []string{mod + "/protocol"}}, "may import only"},
		{listedPackage{ImportPath: mod, Deps: []string{mod + "/cmd/parley"}}, "nothing imports it"},
	}
	for _, m := range more {
		vs := checkLayers([]listedPackage{m.pkg}, layerRules)
		if len(vs) != 1 || !strings.Contains(vs[0].String(), m.want) {
			t.Errorf("%s depending on %s: got %v, want one violation saying %q", m.pkg.ImportPath, m.pkg.Deps, vs, m.want)
		}
	}

	// And silence for an allowed graph: the diagram's own arrows.
	ok := []listedPackage{
		{ImportPath: mod + "/cmd/parley", Deps: []string{mod + "/node", mod + "/api", mod + "/web", mod + "/directory", mod + "/store", mod + "/protocol"}},
		{ImportPath: mod + "/node", Deps: []string{mod + "/directory", mod + "/store", mod + "/protocol", "github.com/libp2p/go-libp2p", "github.com/dgraph-io/badger/v4"}},
		{ImportPath: mod + "/directory", Deps: []string{mod + "/protocol", "github.com/libp2p/go-libp2p/core/routing"}},
		{ImportPath: mod + "/store", Deps: []string{mod + "/protocol", mod + "/store/internal/keys", "github.com/dgraph-io/badger/v4"}},
		{ImportPath: mod + "/protocol", Deps: []string{mod + "/protocol/pb", "google.golang.org/protobuf/proto"}},
		{ImportPath: mod + "/api", Deps: []string{"net/http"}},
		{ImportPath: mod + "/nodeish", Deps: []string{mod + "/apiary"}}, // prefixes match whole path elements only
	}
	if vs := checkLayers(ok, layerRules); len(vs) != 0 {
		t.Errorf("allowed graph reported violations: %v", vs)
	}
}
