package db

import (
	"database/sql"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors of the store. cri maps them to gRPC codes.
var (
	// ErrNotFound: no row with that id, or not in a state the change accepts.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a row with that id exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrNameReserved: the name is held by another pod or container; the
	// message names the holder.
	ErrNameReserved = errors.New("name reserved")
	// ErrAmbiguous: a truncated id matches more than one row.
	ErrAmbiguous = errors.New("ambiguous id prefix")
	// ErrInUse: the row is still referenced (a sandbox with containers).
	ErrInUse = errors.New("in use")
	// ErrInvalid: the row breaks a CHECK constraint (a bad state, a bad id).
	ErrInvalid = errors.New("invalid")
	// ErrCorrupt: the database file is not a database, or is damaged.
	ErrCorrupt = errors.New("database file is corrupt")
)

// translate turns driver errors into the store's sentinels by SQLite's
// extended result codes, never by message text. Callers add which object
// failed, since SQLite does not say which constraint fired.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return fmt.Errorf("%w: %v", ErrAlreadyExists, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %v", ErrInUse, err)
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// Primary codes: the low byte of the extended one.
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

// isUniqueViolation reports whether err is a PRIMARY KEY or UNIQUE
// violation, as translated.
func isUniqueViolation(err error) bool { return errors.Is(err, ErrAlreadyExists) }
