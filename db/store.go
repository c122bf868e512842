// Package db owns crisp's node state: the SQLite store, its migrations and
// named queries, typed row structs and the sentinel errors callers map to
// gRPC codes. It imports only schema and queries: never cri, runtimes or
// gRPC.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

func init() {
	// sqlx knows the modernc driver only by its cgo cousin's name.
	sqlx.BindDriver("sqlite", sqlx.QUESTION)
}

// Options tune how the store opens its file.
type Options struct {
	// Synchronous is SQLite's synchronous pragma: NORMAL (the default)
	// survives any crash of the process without losing a committed
	// transaction; a power loss may drop the last few, which the reconciler
	// repairs from storage and runtime. FULL trades write latency for that.
	Synchronous string
	// BusyTimeout bounds how long a writer waits for the lock.
	BusyTimeout time.Duration
}

// Store is crisp's node state. One exported method is one transaction.
// A Store is safe for concurrent use.
type Store struct {
	db *sqlx.DB
	q  statements
	// now is the clock; tests replace it.
	now func() time.Time
	// commits gets a token after a write commits (see Commits).
	commits chan struct{}
	// gen counts committed writes of pod or container rows (see Generation).
	gen atomic.Uint64
	// writer is held by the one write transaction running (see inTx).
	writer chan struct{}
}

// Open opens (creating if needed) the database at path, applies pending
// migrations and checks the named queries. It fails on an unknown, missing
// or duplicate query name, or on a migration error.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	q, err := loadStatements()
	if err != nil {
		return nil, err
	}
	if opts.Synchronous == "" {
		opts.Synchronous = "NORMAL"
	}
	switch opts.Synchronous {
	case "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		return nil, fmt.Errorf("open state database %s: synchronous must be OFF, NORMAL, FULL or EXTRA, not %q", path, opts.Synchronous)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if err := ownerOnly(path); err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	dbx, err := sqlx.Open("sqlite", dsn(path, opts))
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	s := &Store{db: dbx, q: q, now: time.Now, commits: make(chan struct{}, 1), writer: make(chan struct{}, 1)}
	if err := migrate(ctx, dbx, &q); err != nil {
		dbx.Close()
		return nil, fmt.Errorf("migrate state database %s: %w", path, translate(err))
	}
	return s, nil
}

// ownerOnly makes the database file 0600 before SQLite opens it: it holds
// whole container configs, environment values among them. SQLite gives
// the -wal and -shm files the database's mode when it creates them; ones
// left from an earlier run are fixed here too.
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// dsn sets every pragma per connection: a PRAGMA run through Exec would
// reach only one connection of the pool.
func dsn(path string, opts Options) string {
	v := url.Values{}
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", opts.BusyTimeout.Milliseconds()))
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous("+opts.Synchronous+")")
	v.Set("_txlock", "immediate") // writers take the lock at BEGIN, never mid-transaction
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: v.Encode()}
	return u.String()
}

// Close closes the database; in WAL mode the last connection to close
// checkpoints the log into the main file.
func (s *Store) Close() error {
	return s.db.Close()
}

// QuickCheck runs SQLite's quick_check, as crispd does after an unclean
// stop. It returns an error naming the first problem found.
func (s *Store) QuickCheck(ctx context.Context) error {
	var res []string
	if err := s.db.SelectContext(ctx, &res, s.q.QuickCheck); err != nil {
		return fmt.Errorf("quick_check: %w", translate(err))
	}
	if len(res) != 1 || res[0] != "ok" {
		return fmt.Errorf("quick_check: %v: %w", res, ErrCorrupt)
	}
	return nil
}

// inTx runs fn in one write transaction, committing if fn returns nil.
// Never call out to a runtime or the network from fn.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return s.write(ctx, fn, true)
}

// inTxAside is inTx for a write that changes no pod or container row (a
// journal event, a reconcile run, a node fact): Generation stays, so the
// views of the pods and containers built from the rows stay valid.
func (s *Store) inTxAside(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return s.write(ctx, fn, false)
}

func (s *Store) write(ctx context.Context, fn func(tx *sqlx.Tx) error, podsChange bool) error {
	// SQLite runs one writer at a time. Writers of this process queue here
	// and start the moment the last one commits; left to SQLite, each
	// would retry BEGIN IMMEDIATE in its busy handler, asleep for up to
	// 100 ms a try, and 20 writers at once waited half a second.
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writer }()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return translate(err)
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return translate(err)
	}
	s.committed(podsChange)
	return nil
}

// nanos is the store's clock in Unix nanoseconds.
func (s *Store) nanos() int64 { return s.now().UnixNano() }

// queryer is what read helpers need: a *sqlx.DB or a *sqlx.Tx.
type queryer interface {
	sqlx.QueryerContext
	sqlx.ExecerContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

var (
	_ queryer = (*sqlx.DB)(nil)
	_ queryer = (*sqlx.Tx)(nil)
)

// execOne runs a named statement that must touch exactly one row; zero rows
// is ErrNotFound (the row is gone, or not in a state the statement accepts).
func execOne(ctx context.Context, e sqlx.ExtContext, query string, arg any) error {
	res, err := sqlx.NamedExecContext(ctx, e, query, arg)
	if err != nil {
		return translate(err)
	}
	return oneRow(res)
}

func oneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
