package main

import (
	"strings"
	"testing"

	"github.com/crisp-cri/crisp/db"
)

func TestWriteResult(t *testing.T) {
	res := &db.Result{
		Columns: []string{"id", "name", "score"},
		Rows: [][]any{
			{int64(1), "plain", 1.5},
			{int64(22), `a, "quoted" <name>`, nil},
		},
	}
	empty := &db.Result{Columns: []string{"id"}, Rows: [][]any{}}

	tests := []struct {
		name, format string
		res          *db.Result
		want         string
	}{
		{"table", "table", res, "" +
			"id  name                score\n" +
			"1   plain               1.5\n" +
			"22  a, \"quoted\" <name>  NULL\n"},
		{"table empty", "table", empty, "id\n"},
		{"table tab and newline", "table",
			&db.Result{Columns: []string{"v"}, Rows: [][]any{{"a\tb\nc"}}},
			"v\na\\tb\\nc\n"},
		{"json", "json", res, `[
  {
    "id": 1,
    "name": "plain",
    "score": 1.5
  },
  {
    "id": 22,
    "name": "a, \"quoted\" <name>",
    "score": null
  }
]
`},
		{"json empty", "json", empty, "[]\n"},
		{"csv", "csv", res, "" +
			"id,name,score\n" +
			"1,plain,1.5\n" +
			"22,\"a, \"\"quoted\"\" <name>\",\n"},
		{"csv empty", "csv", empty, "id\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := writeResult(&b, tt.res, tt.format); err != nil {
				t.Fatalf("writeResult(%q): %v", tt.format, err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("writeResult(%q):\ngot\n%s\nwant\n%s", tt.format, got, tt.want)
			}
		})
	}
}

func TestWriteResultUnknownFormat(t *testing.T) {
	var b strings.Builder
	err := writeResult(&b, &db.Result{}, "yaml")
	if err == nil {
		t.Fatal("writeResult(yaml): got nil error, want unknown format")
	}
	for _, want := range []string{`"yaml"`, "table", "json", "csv"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q: want it to mention %s", err, want)
		}
	}
	if b.Len() != 0 {
		t.Errorf("output: got %q, want nothing", b.String())
	}
}
