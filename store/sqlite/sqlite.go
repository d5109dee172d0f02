// Package sqlite is Herald's SQLite store: it implements subscribers.Store
// and delivery.Store on one database file in WAL mode, with one writer
// connection (every write transaction is BEGIN IMMEDIATE, so two writers
// never deadlock upgrading a read lock) beside a pool of read-only
// connections.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"herald"
	"herald/delivery"
	"herald/subscribers"
)

// The interfaces this package implements.
var (
	_ subscribers.Store = (*DB)(nil)
	_ subscribers.Tx    = (*tx)(nil)
	_ delivery.Store    = (*DB)(nil)
)

// DB is an open Herald database. It is safe for concurrent use.
type DB struct {
	path   string
	writer *sql.DB // one connection: SQLite has one writer at a time
	reader *sql.DB // query_only connections for reads
	now    func() time.Time
}

type config struct {
	maxReaders  int
	busyTimeout time.Duration
	now         func() time.Time
}

// Option configures Open.
type Option func(*config)

// WithMaxReaders sets how many read-only connections the reader pool may
// open (default 4).
func WithMaxReaders(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxReaders = n
		}
	}
}

// WithBusyTimeout sets how long a statement waits for a lock held by another
// connection or process before failing (default 5 s).
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.busyTimeout = d
		}
	}
}

// WithClock sets the clock used for bookkeeping times the callers do not
// supply, such as when a migration was applied (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// Open opens (creating it and its parent directory if missing) the SQLite
// database file at path. Call Migrate before using it.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	cfg := config{maxReaders: 4, busyTimeout: 5 * time.Second, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return nil, fmt.Errorf("open sqlite: %q: want a plain file path (no :memory:, URI or '?')", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
	}

	busy := strconv.FormatInt(cfg.busyTimeout.Milliseconds(), 10)
	common := url.Values{
		"_busy_timeout": {busy},
		"_foreign_keys": {"on"},
		// Each connection keeps its prepared statements, so the hot
		// claim and settle statements are compiled once per connection.
		"_stmt_cache_size": {"64"},
	}
	w := url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_txlock":       {"immediate"},
	}
	r := url.Values{"_query_only": {"1"}}
	for k, v := range common {
		w[k], r[k] = v, v
	}

	writer, err := sql.Open("sqlite3", path+"?"+w.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	// The writer connects first: it creates the file and turns WAL on (a
	// persistent property of the file), which the readers rely on.
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	reader, err := sql.Open("sqlite3", path+"?"+r.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite reader: %w", err)
	}
	reader.SetMaxOpenConns(cfg.maxReaders)
	reader.SetMaxIdleConns(cfg.maxReaders)
	reader.SetConnMaxIdleTime(5 * time.Minute)
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &DB{path: path, writer: writer, reader: reader, now: cfg.now}, nil
}

// Path returns the file the database was opened from.
func (db *DB) Path() string { return db.path }

// Close closes both connection pools, after letting SQLite refresh the
// statistics its query planner uses (PRAGMA optimize). The WAL is
// checkpointed when the last connection closes.
func (db *DB) Close() error {
	_, err := db.writer.Exec(`PRAGMA optimize`)
	return errors.Join(err, db.reader.Close(), db.writer.Close())
}

// Ping checks that the database answers to both the writer and the readers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.writer.PingContext(ctx); err != nil {
		return translate(err, "ping sqlite writer", "")
	}
	var one int
	if err := db.reader.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return translate(err, "ping sqlite reader", "")
	}
	return nil
}

// write runs fn in one IMMEDIATE transaction on the writer connection and
// commits it when fn returns nil.
func (db *DB) write(ctx context.Context, fn func(*sql.Tx) error) error {
	t, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return translate(err, "begin", "")
	}
	defer t.Rollback()
	if err := fn(t); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return translate(err, "commit", "")
	}
	return nil
}

// translate turns a driver error into a domain error, by code, and adds
// context. what names the thing looked up or written ("subscriber"), for the
// user-safe message of ENOTFOUND and ECONFLICT.
func translate(err error, op, what string) error {
	if err == nil {
		return nil
	}
	if what == "" {
		what = "record"
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, herald.Errorf(herald.ENOTFOUND, "No such %s.", what))
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch {
		case se.ExtendedCode == sqlite3.ErrConstraintUnique, se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey:
			return fmt.Errorf("%s: %w (%w)", op, herald.Errorf(herald.ECONFLICT, "This %s already exists.", what), err)
		case se.Code == sqlite3.ErrBusy, se.Code == sqlite3.ErrLocked:
			return fmt.Errorf("%s: %w (%w)", op, herald.Errorf(herald.EUNAVAILABLE, "The database is busy. Please try again in a moment."), err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// notFound is the ENOTFOUND error for an update or lookup that matched no row.
func notFound(op, what string) error {
	return fmt.Errorf("%s: %w", op, herald.Errorf(herald.ENOTFOUND, "No such %s.", what))
}

// encTime encodes t for a nullable time column: NULL for the zero time,
// unix milliseconds otherwise.
func encTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// encTimeNN encodes t for a NOT NULL time column: 0 for the zero time.
func encTimeNN(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// decTime decodes a time column: NULL and 0 are the zero time.
func decTime(n sql.NullInt64) time.Time {
	if !n.Valid || n.Int64 == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n.Int64).UTC()
}
