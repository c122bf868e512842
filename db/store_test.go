package db

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/crisp-cri/crisp/queries"
	"github.com/crisp-cri/crisp/schema"
)

func TestMigrateFromEmpty(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	ms, err := loadMigrations(schema.FS)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(ms) {
		t.Errorf("SchemaVersion() = %d, %v, want %d", v, err, len(ms))
	}
	var tables []string
	if err := s.db.SelectContext(ctx, &tables, "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name"); err != nil {
		t.Fatal(err)
	}
	want := []string{"containers", "containers_view", "events", "labels", "names", "node_state", "pods", "recent_events", "reconcile_history", "reconcile_runs", "sandboxes", "schema_migrations"}
	if !reflect.DeepEqual(tables, want) {
		t.Errorf("tables = %v, want %v", tables, want)
	}
	s.Close()

	// Reopening applies nothing new and keeps the data.
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("second Open() = %v", err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != len(ms) {
		t.Errorf("SchemaVersion() after reopen = %d, want %d", v, len(ms))
	}
	if err := s.QuickCheck(ctx); err != nil {
		t.Errorf("QuickCheck() = %v", err)
	}
}

func TestPragmasPerConnection(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	// Hold several connections at once so the pool cannot hand back one.
	for i := 0; i < 3; i++ {
		conn, err := s.db.Connx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var fk, busy int
		var mode string
		conn.GetContext(ctx, &fk, "PRAGMA foreign_keys")
		conn.GetContext(ctx, &busy, "PRAGMA busy_timeout")
		conn.GetContext(ctx, &mode, "PRAGMA journal_mode")
		if fk != 1 || busy != 5000 || mode != "wal" {
			t.Errorf("connection %d: foreign_keys=%d busy_timeout=%d journal_mode=%s, want 1, 5000, wal", i, fk, busy, mode)
		}
	}
}

func TestMigrationNumbering(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		wantErr string
	}{
		{"ok", []string{"0001_a.sql", "0002_b.sql"}, ""},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, "want number 0002"},
		{"repeat", []string{"0001_a.sql", "0001_b.sql"}, "want number 0002"},
		{"bad name", []string{"0001_a.sql", "two.sql"}, "not named NNNN_what.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys[f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			_, err := loadMigrations(fsys)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("loadMigrations(%v) = %v, want error containing %q", tt.files, err, tt.wantErr)
			}
		})
	}
}

func TestQueryNamesChecked(t *testing.T) {
	good, err := parseQueries(queries.FS)
	if err != nil {
		t.Fatalf("parseQueries(embedded) = %v", err)
	}
	if _, err := bindStatements(good); err != nil {
		t.Fatalf("bindStatements(embedded) = %v", err)
	}

	missing := map[string]string{}
	for k, v := range good {
		missing[k] = v
	}
	delete(missing, "GetSandbox")
	if _, err := bindStatements(missing); err == nil || !strings.Contains(err.Error(), "GetSandbox") {
		t.Errorf("bindStatements(without GetSandbox) = %v, want it named as missing", err)
	}

	unknown := map[string]string{"NoSuchQuery": "SELECT 1"}
	for k, v := range good {
		unknown[k] = v
	}
	if _, err := bindStatements(unknown); err == nil || !strings.Contains(err.Error(), "NoSuchQuery") {
		t.Errorf("bindStatements(with NoSuchQuery) = %v, want it named as unknown", err)
	}

	dup := fstest.MapFS{
		"a.sql": {Data: []byte("-- name: X :one\nSELECT 1;\n")},
		"b.sql": {Data: []byte("-- name: X :one\nSELECT 2;\n")},
	}
	if _, err := parseQueries(dup); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("parseQueries(duplicate) = %v, want 'defined twice'", err)
	}
	badTag := fstest.MapFS{"a.sql": {Data: []byte("-- name: X :some\nSELECT 1;\n")}}
	if _, err := parseQueries(badTag); err == nil || !strings.Contains(err.Error(), "cardinality") {
		t.Errorf("parseQueries(bad tag) = %v, want a cardinality error", err)
	}
}

// Every statement compiles against the migrated schema.
func TestEveryQueryCompiles(t *testing.T) {
	s := mustOpen(t)
	v := reflect.ValueOf(s.q)
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Name
		stmt, err := s.db.Preparex(v.Field(i).String())
		if err != nil {
			t.Errorf("query %s does not compile: %v", name, err)
			continue
		}
		stmt.Close()
	}
}

// A UNIQUE violation on a real database maps to the sentinels by code.
func TestUniqueViolationSentinel(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	sb, _, err := s.CreateSandbox(ctx, testSandbox("web"))
	if err != nil {
		t.Fatal(err)
	}

	// Straight at the table: the driver's error carries the extended code.
	sameID := sb
	sameID.Name = "another name"
	_, err = s.db.NamedExecContext(ctx, s.q.InsertSandbox, sameID)
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		t.Fatalf("duplicate insert error = %v, want SQLITE_CONSTRAINT_PRIMARYKEY", err)
	}
	if got := translate(err); !errors.Is(got, ErrAlreadyExists) {
		t.Errorf("translate(pk violation) = %v, want ErrAlreadyExists", got)
	}
	other := sb
	other.ID = NewID()
	_, err = s.db.NamedExecContext(ctx, s.q.InsertSandbox, other)
	if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_CONSTRAINT_UNIQUE {
		t.Fatalf("duplicate name insert error = %v, want SQLITE_CONSTRAINT_UNIQUE", err)
	}

	// Through the Store: another pod under the same name is ErrNameReserved
	// and the message names the holder.
	other.ConfigHash = "another config"
	_, _, err = s.CreateSandbox(ctx, other)
	if !errors.Is(err, ErrNameReserved) || !strings.Contains(err.Error(), sb.ID) || !strings.Contains(err.Error(), sb.Name) {
		t.Errorf("CreateSandbox(same name) = %v, want ErrNameReserved naming %s and %s", err, sb.Name, sb.ID)
	}
	if err := s.ReserveName(ctx, KindPod, sb.Name, other.ID); !errors.Is(err, ErrNameReserved) {
		t.Errorf("ReserveName(held) = %v, want ErrNameReserved", err)
	}
	// A same-id insert under a fresh name is ErrAlreadyExists.
	dupID := testSandbox("dup")
	dupID.ID = sb.ID
	if _, _, err := s.CreateSandbox(ctx, dupID); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("CreateSandbox(same id) = %v, want ErrAlreadyExists", err)
	}
	// ... and left no name behind.
	if _, err := s.NameOwner(ctx, KindPod, dupID.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("NameOwner(%s) after failed create = %v, want ErrNotFound (rolled back)", dupID.Name, err)
	}
}

func TestRollbackOnError(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	sb := testSandbox("web")
	sb.State = "bogus" // violates the CHECK after the name was reserved
	if _, _, err := s.CreateSandbox(ctx, sb); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateSandbox(bad state) = %v, want ErrInvalid", err)
	}
	if _, err := s.NameOwner(ctx, KindPod, sb.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("name after failed create: %v, want ErrNotFound", err)
	}
	if n, _ := s.Names(ctx); len(n) != 0 {
		t.Errorf("Names() = %v, want none", n)
	}
}

// A file that is not a database fails Open with ErrCorrupt, so crispd can
// tell it from a database it merely cannot lock.
func TestOpenCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), path, Options{})
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(garbage) = %v, want ErrCorrupt", err)
	}
}

// Writers of one store queue for the write lock; one whose context ends
// while it waits gives up with the context's error and writes nothing.
func TestWriterQueueHonoursContext(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	s.writer <- struct{}{} // another write holds the lock
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.SetNodeValue(short, "k", "v"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SetNodeValue() while the lock is held = %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.SetNodeValue(ctx, "k", "v2") }()
	select {
	case err := <-done:
		t.Fatalf("SetNodeValue() = %v before the lock was released", err)
	case <-time.After(50 * time.Millisecond):
	}
	<-s.writer // the other write commits
	if err := <-done; err != nil {
		t.Fatalf("SetNodeValue() after the lock was released = %v", err)
	}
	if v, err := s.NodeValue(ctx, "k"); err != nil || v != "v2" {
		t.Errorf("NodeValue() = %q, %v; want v2 (the timed-out write wrote nothing)", v, err)
	}
}

// Generation moves with every write of pod or container rows, and only
// with those: the CRI lists' views survive events and reconcile runs.
func TestGenerationCountsPodAndContainerWrites(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	g := s.Generation()
	sb := mustReadySandbox(t, s, "gen")
	if s.Generation() == g {
		t.Fatalf("Generation() did not move with a new pod")
	}
	g = s.Generation()
	if err := s.AppendEvent(ctx, Event{Kind: "node", ObjectID: "n", Type: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReconcileRun(ctx, ReconcileRun{Trigger: "periodic", Counts: IntMap{}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetNodeValue(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if s.Generation() != g {
		t.Errorf("Generation() moved with an event, a reconcile run or a node fact")
	}
	if _, _, err := s.CreateContainer(ctx, testContainer(sb.ID, "c")); err != nil {
		t.Fatal(err)
	}
	if s.Generation() == g {
		t.Errorf("Generation() did not move with a new container")
	}
}
