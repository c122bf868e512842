package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// readOnlyFixture writes a WAL-mode state file the way crispd leaves it
// (closed, log checkpointed) and returns its path.
func readOnlyFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	w, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`CREATE TABLE t(x)`,
		`INSERT INTO t(x) VALUES (1), ('two'), (NULL), (X'00ff'), (X'6869')`,
		`CREATE INDEX t_x ON t(x)`, // gives REINDEX something to rewrite
		`CREATE VIEW v AS SELECT x FROM t WHERE typeof(x) = 'integer'`,
	} {
		if _, err := w.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	var mode string
	if err := w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode: got %q, %v; want wal", mode, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func openReadOnlyT(t *testing.T, path string) *ReadOnly {
	t.Helper()
	ro, err := OpenReadOnly(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	return ro
}

func TestReadOnlySelect(t *testing.T) {
	ro := openReadOnlyT(t, readOnlyFixture(t))
	ctx := context.Background()

	res, err := ro.Query(ctx, `SELECT x, typeof(x) AS kind FROM t ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Result{
		Columns: []string{"x", "kind"},
		Rows: [][]any{
			{int64(1), "integer"},
			{"two", "text"},
			{nil, "null"},
			{"x'00ff'", "blob"}, // not UTF-8: hex literal
			{"hi", "blob"},      // UTF-8 blob: text
		},
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %#v, want %#v", res, want)
	}

	res, err = ro.Query(ctx, `SELECT x FROM v WHERE x > ?`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]any{{int64(1)}}; !reflect.DeepEqual(res.Rows, want) {
		t.Errorf("view: got %#v, want %#v", res.Rows, want)
	}
}

func TestReadOnlyPragmaTableInfo(t *testing.T) {
	ro := openReadOnlyT(t, readOnlyFixture(t))
	res, err := ro.Query(context.Background(), `PRAGMA table_info(t)`)
	if err != nil {
		t.Fatalf("PRAGMA table_info(t): %v", err)
	}
	if len(res.Rows) != 1 || res.Rows[0][1] != "x" {
		t.Errorf("got rows %#v, want one row for column x", res.Rows)
	}
	if _, err := ro.Query(context.Background(), `PRAGMA user_version`); err != nil {
		t.Errorf("PRAGMA user_version: got %v, want nil", err)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	path := readOnlyFixture(t)
	before := fileSHA256(t, path)
	other := filepath.Join(filepath.Dir(path), "other.db")
	copied := filepath.Join(filepath.Dir(path), "copy.db")
	ro := openReadOnlyT(t, path)

	tests := []struct {
		name, query string
	}{
		{"delete", `DELETE FROM t`},
		{"update", `UPDATE t SET x = 2`},
		{"insert", `INSERT INTO t(x) VALUES (9)`},
		{"drop", `DROP TABLE t`},
		{"create", `CREATE TABLE u(x)`},
		{"create temp", `CREATE TEMP TABLE u(x)`},
		{"alter", `ALTER TABLE t ADD COLUMN y`},
		{"attach", `ATTACH DATABASE '` + other + `' AS o`},
		{"writable_schema", `PRAGMA writable_schema=1`},
		{"journal_mode", `PRAGMA journal_mode=DELETE`},
		{"user_version set", `PRAGMA user_version=7`},
		{"begin", `BEGIN`},
		{"savepoint", `SAVEPOINT s`},
		{"vacuum", `VACUUM`},
		{"vacuum into", `VACUUM INTO '` + copied + `'`},
		{"reindex", `REINDEX`},
		{"analyze", `ANALYZE`},
		{"cte delete", `WITH c AS (SELECT 1) DELETE FROM t`},
		{"select then delete", `SELECT 1; DELETE FROM t`},
		{"delete then select", `DELETE FROM t; SELECT 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ro.Query(context.Background(), tt.query)
			if !errors.Is(err, ErrReadOnly) {
				t.Errorf("Query(%q): got %v, %v; want error wrapping ErrReadOnly", tt.query, res, err)
			}
		})
	}

	for _, p := range []string{other, copied} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat %s: got %v, want not exist", p, err)
		}
	}
	res, err := ro.Query(context.Background(), `SELECT count(*) FROM t`)
	if err != nil || !reflect.DeepEqual(res.Rows, [][]any{{int64(5)}}) {
		t.Errorf("count after refusals: got %v, %v; want 5 rows", res, err)
	}
	if err := ro.Close(); err != nil {
		t.Errorf("Close: got %v, want nil", err)
	}
	if after := fileSHA256(t, path); after != before {
		t.Errorf("sha256 of %s: got %x, want %x (unchanged)", path, after, before)
	}
}

func TestReadOnlyRefusalMessage(t *testing.T) {
	ro := openReadOnlyT(t, readOnlyFixture(t))
	_, err := ro.Query(context.Background(), `DELETE FROM t`)
	const want = "refused: crispctl sql is read-only (statement would write or change the connection): "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want a message starting %q", err, want)
	}
}

// TestReadOnlyMapsReadonlyCode checks the second line of defence: a write
// that got past the authorizer fails on the mode=ro file with
// SQLITE_READONLY, which must also read as ErrReadOnly.
func TestReadOnlyMapsReadonlyCode(t *testing.T) {
	path := readOnlyFixture(t)
	plain, err := sql.Open("sqlite", "file:"+path+"?mode=ro") // no authorizer
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = plain.Exec(`DELETE FROM t`)
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_READONLY {
		t.Fatalf("DELETE on mode=ro: got %v, want SQLITE_READONLY", err)
	}
	if got := refused(err); !errors.Is(got, ErrReadOnly) || !errors.As(got, &se) {
		t.Errorf("refused(%v): got %v, want it to wrap ErrReadOnly and the *sqlite.Error", err, got)
	}
}

// TestOpenReadOnlyOddPath checks the path is escaped into the URI: '?' and
// '#' would otherwise end it, '%' would be decoded.
func TestOpenReadOnlyOddPath(t *testing.T) {
	b, err := os.ReadFile(readOnlyFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "odd dir?#%41", "state&x=1.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := openReadOnlyT(t, path).Query(context.Background(), `SELECT count(*) FROM t`)
	if err != nil || !reflect.DeepEqual(res.Rows, [][]any{{int64(5)}}) {
		t.Errorf("count via %q: got %v, %v; want 5", path, res, err)
	}
}

func TestOpenReadOnlyMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	ro, err := OpenReadOnly(context.Background(), path)
	if err == nil {
		ro.Close()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly(%s): got %v, want error wrapping fs.ErrNotExist", path, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s after open: got %v, want not exist", path, err)
	}
}
