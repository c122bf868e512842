package failpoint

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// Every name in Names is hit in package cri, and nothing else is: a typo
// would leave a point that no test can arm. A name may be hit at more than
// one place, for steps that have more than one way (an infra process or an
// infra container).
func TestNamesMatchCallSites(t *testing.T) {
	files, err := filepath.Glob("../*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Hit" || len(call.Args) != 1 {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "failpoint" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok {
				t.Errorf("%s: failpoint.Hit with a name that is not a string literal", fset.Position(call.Pos()))
				return true
			}
			name, _ := strconv.Unquote(lit.Value)
			seen[name]++
			if !slices.Contains(Names, name) {
				t.Errorf("%s: failpoint %q is not in Names", fset.Position(call.Pos()), name)
			}
			return true
		})
	}
	for _, name := range Names {
		if seen[name] == 0 {
			t.Errorf("failpoint %q is never hit in package cri", name)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		at      map[string]int
		percent float64
		wantErr bool
	}{
		{name: "empty", in: ""},
		{name: "one", in: "pod.run.after-cni", at: map[string]int{"pod.run.after-cni": 1}},
		{name: "nth", in: "pod.run.after-cni@3", at: map[string]int{"pod.run.after-cni": 3}},
		{name: "two and random", in: "pod.run.after-cni, container.stop.after-kill@2,random:2.5",
			at: map[string]int{"pod.run.after-cni": 1, "container.stop.after-kill": 2}, percent: 2.5},
		{name: "unknown", in: "pod.run.after-lunch", wantErr: true},
		{name: "bad nth", in: "pod.run.after-cni@0", wantErr: true},
		{name: "bad percent", in: "random:200", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parse(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil || tt.in == "" {
				if p != nil {
					t.Errorf("parse(%q) = %v, want nil", tt.in, p)
				}
				return
			}
			if len(p.at) != len(tt.at) || p.percent != tt.percent {
				t.Fatalf("parse(%q) = %v, %v; want %v, %v", tt.in, p.at, p.percent, tt.at, tt.percent)
			}
			for k, v := range tt.at {
				if p.at[k] != v {
					t.Errorf("parse(%q)[%s] = %d, want %d", tt.in, k, p.at[k], v)
				}
			}
		})
	}
}

func TestDue(t *testing.T) {
	p, err := parse("pod.run.after-cni@2")
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for range 3 {
		got = append(got, p.due("pod.run.after-cni"), p.due("pod.run.after-row"))
	}
	want := []bool{false, false, true, false, false, false}
	if !slices.Equal(got, want) {
		t.Errorf("due() = %v, want %v", got, want)
	}
	var none *plan
	if none.due("pod.run.after-cni") {
		t.Error("nil plan: due() = true")
	}
	all, _ := parse("random:100")
	if !all.due("pod.run.after-row") {
		t.Error("random:100: due() = false")
	}
}
