// Package arch checks the import arrows between crisp's top-level folders,
// the ones README's Architecture section states: a package may import
// crisp packages only from the folders listed for its own.
package arch

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/crisp-cri/crisp/"

// mayImport lists, by top-level folder, the folders its packages may
// import from (their own folder is always allowed).
var mayImport = map[string][]string{
	"cmd":        {"cri", "reconciler", "runtimes", "db", "schema", "queries"},
	"cri":        {"runtimes", "db", "schema", "queries"},
	"reconciler": {"runtimes", "db", "schema", "queries"},
	"runtimes":   {},
	"db":         {"schema", "queries"},
	"schema":     {},
	"queries":    {},
	"test":       {"cmd", "cri", "reconciler", "runtimes", "db", "schema", "queries"},
}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func TestImportArrows(t *testing.T) {
	// The build tags of the Makefile's TAGS: without them go list sees
	// other files of the storage libraries, not other crisp imports.
	out, err := exec.Command("go", "list", "-tags", "containers_image_openpgp,exclude_graphdriver_btrfs", "-json", "../../...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		from := folder(p.ImportPath)
		allowed, ok := mayImport[from]
		if !ok {
			t.Errorf("%s: top-level folder %q is not in the architecture", p.ImportPath, from)
			continue
		}
		// Tests may reach further (a test of cri may use test/harness);
		// the rule is about what the code itself depends on.
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := folder(imp)
			if to != from && !contains(allowed, to) {
				t.Errorf("%s imports %s: %s/ may import only from %v", p.ImportPath, imp, from, allowed)
			}
		}
	}
	if n < 20 {
		t.Fatalf("go list saw %d packages; the walk is broken", n)
	}
}

func folder(importPath string) string {
	rest := strings.TrimPrefix(importPath, module)
	top, _, _ := strings.Cut(rest, "/")
	return top
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
