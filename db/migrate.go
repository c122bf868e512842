package db

import (
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/crisp-cri/crisp/schema"
)

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads schema/*.sql and checks the numbering: 0001, 0002, …
// with no gap and no repeat.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q is not named NNNN_what.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want number %04d (migrations run 0001, 0002, … without gaps or repeats)", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies every migration not yet recorded in schema_migrations,
// each in its own transaction together with its record.
func migrate(ctx context.Context, dbx *sqlx.DB, q *statements) error {
	ms, err := loadMigrations(schema.FS)
	if err != nil {
		return err
	}
	if _, err := dbx.ExecContext(ctx, q.CreateMigrationsTable); err != nil {
		return err
	}
	var applied []int
	if err := dbx.SelectContext(ctx, &applied, q.AppliedMigrations); err != nil {
		return err
	}
	for i, v := range applied {
		if i >= len(ms) || v != ms[i].version {
			return fmt.Errorf("database has migration %d applied, which this crisp does not know (it knows %d)", v, len(ms))
		}
	}
	for _, m := range ms[len(applied):] {
		tx, err := dbx.BeginTxx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, q.RecordMigration, m.version, m.name, time.Now().UnixNano()); err != nil {
			tx.Rollback()
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return nil
}

// SchemaVersion reports the newest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var applied []int
	if err := s.db.SelectContext(ctx, &applied, s.q.AppliedMigrations); err != nil {
		return 0, translate(err)
	}
	if len(applied) == 0 {
		return 0, nil
	}
	return applied[len(applied)-1], nil
}

// SQLiteVersion reports the version of the SQLite library in use.
func (s *Store) SQLiteVersion(ctx context.Context) (string, error) {
	var v string
	err := s.db.GetContext(ctx, &v, s.q.SQLiteVersion)
	return v, translate(err)
}
