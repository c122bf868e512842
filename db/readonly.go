package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrReadOnly is wrapped by every error of a statement that [ReadOnly]
// refuses because it would write the database or change the connection.
var ErrReadOnly = errors.New("the state database is read-only here")

// ReadOnly is a read-only view of the state database for ad-hoc inspection
// (crispctl sql). Writes are stopped twice: SQLite opens the file with
// mode=ro, and an authorizer on the one connection refuses, at compile time,
// every statement that is not a read or an introspection PRAGMA.
//
// A ReadOnly is safe for concurrent use; queries run one at a time.
type ReadOnly struct {
	mu   sync.Mutex // serialises queries on the single connection
	db   *sql.DB
	conn *sql.Conn // the connection the authorizer is installed on
}

// Result is the outcome of a [ReadOnly.Query]: the column names in order and
// the rows, each value nil, int64, float64, string, or time.Time (the driver
// parses TEXT in columns declared DATE, DATETIME or TIMESTAMP). BLOBs become
// strings when they are valid UTF-8 and hex literals (x'0a1b') otherwise.
type Result struct {
	Columns []string
	Rows    [][]any
}

// OpenReadOnly opens the SQLite state database at path read-only, waiting up
// to 5s for a writer's lock. It never creates the file: a missing path is an
// error wrapping fs.ErrNotExist, and every error names the path. The
// returned ReadOnly holds one connection until Close. It may be called
// concurrently, and alongside a running crispd.
func OpenReadOnly(ctx context.Context, path string) (*ReadOnly, error) {
	fail := func(err error) error {
		return fmt.Errorf("open state database %s read-only: %w", path, err)
	}
	// mode=ro alone would not create the file either, but SQLite's
	// "unable to open database file" hides why; Stat says it.
	if _, err := os.Stat(path); err != nil {
		return nil, fail(err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fail(err)
	}
	// Only a "file:" URI reaches SQLite with its mode parameter; the driver
	// strips the query from a plain file name and opens read-write.
	u := url.URL{Scheme: "file", OmitHost: true, Path: abs,
		RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	sdb, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fail(err)
	}
	// One connection, so the authorizer below covers every statement.
	sdb.SetMaxOpenConns(1)
	conn, err := sdb.Conn(ctx)
	if err != nil {
		sdb.Close()
		return nil, fail(err)
	}
	err = conn.Raw(func(dc any) error {
		reg, ok := dc.(sqlite.AuthorizerRegisterer)
		if !ok {
			return fmt.Errorf("driver connection %T cannot install an authorizer", dc)
		}
		return reg.RegisterAuthorizer(authorizeRead)
	})
	if err != nil {
		conn.Close()
		sdb.Close()
		return nil, fail(err)
	}
	return &ReadOnly{db: sdb, conn: conn}, nil
}

// introspection lists the PRAGMAs that only report, whatever their argument.
var introspection = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true,
	"index_list": true, "index_info": true, "index_xinfo": true,
	"foreign_key_list": true, "database_list": true, "collation_list": true,
	"function_list": true, "pragma_list": true,
}

// queryOnly lists the PRAGMAs that report when asked without a value and
// change something (or do more work) when given one.
var queryOnly = map[string]bool{
	"user_version": true, "schema_version": true, "journal_mode": true,
	"quick_check": true, "integrity_check": true,
}

// authorizeRead is the connection's authorizer. It allows by action rather
// than denying known writes, so actions SQLite adds later are refused.
func authorizeRead(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
	switch action {
	case sqlite.AuthSelect, sqlite.AuthRead, sqlite.AuthRecursive:
		return sqlite.AuthorizerOK
	case sqlite.AuthFunction:
		// arg2 is the function name. load_extension would run native code;
		// it is disabled by default, refused here in case it is not.
		if strings.EqualFold(arg2, "load_extension") {
			return sqlite.AuthorizerDeny
		}
		return sqlite.AuthorizerOK
	case sqlite.AuthPragma:
		// arg1 is the pragma name as typed, arg2 its value or "".
		name := strings.ToLower(arg1)
		if introspection[name] || (queryOnly[name] && arg2 == "") {
			return sqlite.AuthorizerOK
		}
	}
	return sqlite.AuthorizerDeny
}

// Query runs one SQL query and returns all of its rows. A statement that
// would write or change the connection (DML, DDL, ATTACH, transactions, a
// PRAGMA outside the introspection set) fails with an error wrapping
// [ErrReadOnly]; other SQLite errors are returned as they are. Concurrent
// calls are serialised on the one connection. The driver
// runs every statement of a multi-statement string, each authorized before
// it runs, so a script holding a write fails before the write; a script of
// reads returns the rows of its last statement.
func (r *ReadOnly) Query(ctx context.Context, query string, args ...any) (*Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rows, err := r.conn.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, refused(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, refused(err)
	}
	res := &Result{Columns: cols, Rows: [][]any{}}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, refused(err)
		}
		for i, v := range vals {
			vals[i] = friendly(v)
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, refused(err)
	}
	return res, nil
}

// Close releases the connection and returns the first errors of doing so.
// Queries after Close fail; Close waits for a running Query.
func (r *ReadOnly) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.conn.Close(), r.db.Close())
}

// friendly makes a scanned value printable: BLOBs become text or a hex
// literal, so formatters need not care about []byte.
func friendly(v any) any {
	b, ok := v.([]byte)
	if !ok {
		return v
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return fmt.Sprintf("x'%x'", b)
}

// refusedError is a statement SQLite would not run on a read-only view.
// It unwraps to both ErrReadOnly and the driver's error.
type refusedError struct{ cause error }

func (e *refusedError) Error() string {
	return "refused: crispctl sql is read-only (statement would write or change the connection): " + e.cause.Error()
}

func (e *refusedError) Unwrap() []error { return []error{ErrReadOnly, e.cause} }

// refused recognises, by result code, the authorizer's denial (SQLITE_AUTH)
// and a write reaching the read-only file (SQLITE_READONLY). Extended codes
// carry the primary code in their low byte.
func refused(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_AUTH, sqlite3.SQLITE_READONLY:
		return &refusedError{cause: err}
	}
	return err
}
