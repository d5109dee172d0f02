// Package postgres is Herald's PostgreSQL store: it implements
// subscribers.Store, delivery.Store and articles.Store on a pgx connection
// pool, with the same numbered migrations as the SQLite engine. Several
// Herald instances may share one database: outbox claims use FOR UPDATE SKIP
// LOCKED, so no message is ever claimed twice, migrations serialise on an
// advisory lock, and TryLeader elects the one instance that builds issues.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald"
	"herald/articles"
	"herald/delivery"
	"herald/subscribers"
)

// The interfaces this package implements.
var (
	_ subscribers.Store = (*DB)(nil)
	_ subscribers.Tx    = (*tx)(nil)
	_ delivery.Store    = (*DB)(nil)
	_ articles.Store    = (*DB)(nil)
	_ articles.Tx       = (*articleTx)(nil)
)

// DB is an open Herald database on PostgreSQL. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	schema string // the schema tables are created in: the first of the search_path

	mu      sync.Mutex
	leaders map[*leader]struct{} // held leader locks, released by Close
	closed  bool
}

type config struct {
	maxConns          int32
	minConns          int32
	maxConnLifetime   time.Duration
	healthCheckPeriod time.Duration
	now               func() time.Time
}

// Option configures Open. An option left unset keeps what the DSN says
// (pgxpool reads pool_max_conns, pool_min_conns, pool_max_conn_lifetime and
// pool_health_check_period from it), else pgxpool's default.
type Option func(*config)

// WithMaxConns caps the connections the pool opens (pgxpool's default: the
// greater of 4 and the number of CPUs). A leader lock (TryLeader) holds one
// of them for as long as it is held.
func WithMaxConns(n int32) Option {
	return func(c *config) {
		if n > 0 {
			c.maxConns = n
		}
	}
}

// WithMinConns sets how many connections the pool keeps open when idle.
func WithMinConns(n int32) Option {
	return func(c *config) {
		if n > 0 {
			c.minConns = n
		}
	}
}

// WithMaxConnLifetime sets how long a connection is used before the pool
// replaces it (pgxpool's default: one hour), so that connections move to
// new servers behind a load balancer or after a failover.
func WithMaxConnLifetime(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.maxConnLifetime = d
		}
	}
}

// WithHealthCheckPeriod sets how often idle connections are checked and
// expired ones replaced (pgxpool's default: one minute).
func WithHealthCheckPeriod(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.healthCheckPeriod = d
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

// Open connects to the PostgreSQL database dsn names (a URL or a key=value
// string, as libpq takes; a search_path parameter selects the schema) and
// checks that it answers. Call Migrate before using it.
func Open(ctx context.Context, dsn string, opts ...Option) (*DB, error) {
	cfg := config{now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The error may quote the DSN, password included: say only that
		// it did not parse.
		return nil, errors.New("open postgres: database.dsn is not a valid PostgreSQL connection string")
	}
	if cfg.maxConns > 0 {
		pc.MaxConns = cfg.maxConns
	}
	if cfg.minConns > 0 {
		pc.MinConns = min(cfg.minConns, pc.MaxConns)
	}
	if cfg.maxConnLifetime > 0 {
		pc.MaxConnLifetime = cfg.maxConnLifetime
	}
	if cfg.healthCheckPeriod > 0 {
		pc.HealthCheckPeriod = cfg.healthCheckPeriod
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, translate(err, "open postgres", "")
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, translate(err, fmt.Sprintf("open postgres %s:%d/%s", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database), "")
	}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT coalesce(current_schema(), '')`).Scan(&schema); err != nil {
		pool.Close()
		return nil, translate(err, "open postgres", "")
	}
	return &DB{pool: pool, now: cfg.now, schema: schema, leaders: make(map[*leader]struct{})}, nil
}

// Close releases the leader locks still held and closes the pool, waiting
// for connections in use to come back. Closing twice is harmless.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	held := make([]*leader, 0, len(db.leaders))
	for l := range db.leaders {
		held = append(held, l)
	}
	db.mu.Unlock()
	for _, l := range held {
		l.release()
	}
	db.pool.Close()
	return nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	return translate(db.pool.Ping(ctx), "ping postgres", "")
}

// inTx runs fn in one read-write transaction, committed when fn returns nil
// and rolled back otherwise; fn's error is returned as is.
func (db *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	t, err := db.pool.Begin(ctx)
	if err != nil {
		return translate(err, "begin", "")
	}
	// A no-op after Commit; its error says nothing fn has not.
	defer t.Rollback(context.WithoutCancel(ctx))
	if err := fn(t); err != nil {
		return err
	}
	return translate(t.Commit(ctx), "commit", "")
}

// SQLSTATE codes translate acts on
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeCheckViolation       = "23514"
	codeNotNullViolation     = "23502"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeTooManyConnections   = "53300"
	codeInFailedTransaction  = "25P02"
	classConnection          = "08"
	classInsufficientRes     = "53"
	classOperatorIntervened  = "57" // admin shutdown, crash shutdown, cannot connect now
	codeQueryCanceled        = "57014"
	codeLockNotAvailable     = "55P03"
	classInvalidAuthorizaton = "28"
)

// translate turns a driver error into a domain error, by SQLSTATE code, and
// adds context. what names the thing looked up or written ("subscriber"),
// for the user-safe message of ENOTFOUND and ECONFLICT.
func translate(err error, op, what string) error {
	if err == nil {
		return nil
	}
	if what == "" {
		what = "record"
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, herald.Errorf(herald.ENOTFOUND, "No such %s.", what))
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		var code string
		var msg string
		switch {
		case pe.Code == codeUniqueViolation:
			code, msg = herald.ECONFLICT, fmt.Sprintf("This %s already exists.", what)
		case pe.Code == codeForeignKeyViolation:
			// Every reference cascades on delete, so a violation means a
			// write named a row (a subscriber, an article) that is gone.
			code, msg = herald.ENOTFOUND, fmt.Sprintf("The %s refers to something that no longer exists.", what)
		case pe.Code == codeCheckViolation, pe.Code == codeNotNullViolation:
			code, msg = herald.EINVALID, fmt.Sprintf("This %s is not valid.", what)
		case pe.Code == codeSerializationFailure, pe.Code == codeDeadlockDetected,
			pe.Code == codeLockNotAvailable, pe.Code == codeTooManyConnections:
			code, msg = herald.EUNAVAILABLE, "The database is busy. Please try again in a moment."
		case pe.Code == codeQueryCanceled:
			// Canceled by our own context, or by statement_timeout.
			return fmt.Errorf("%s: %w", op, err)
		case pe.Code == codeInFailedTransaction:
			// A PostgreSQL transaction is unusable after a failed
			// statement: fn must return once a Tx method fails.
			return fmt.Errorf("%s: an earlier statement in this transaction failed: %w", op, err)
		case len(pe.Code) == 5 && (pe.Code[:2] == classConnection || pe.Code[:2] == classInsufficientRes ||
			pe.Code[:2] == classOperatorIntervened || pe.Code[:2] == classInvalidAuthorizaton):
			code, msg = herald.EUNAVAILABLE, "The database is unavailable. Please try again in a moment."
		}
		if code != "" {
			return fmt.Errorf("%s: %w (%w)", op, herald.Errorf(code, "%s", msg), err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w (%w)", op, herald.Errorf(herald.EUNAVAILABLE, "The database is unavailable. Please try again in a moment."), err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// notFound is the ENOTFOUND error for an update or lookup that matched no row.
func notFound(op, what string) error {
	return fmt.Errorf("%s: %w", op, herald.Errorf(herald.ENOTFOUND, "No such %s.", what))
}

// conflict is the ECONFLICT error for an insert that ON CONFLICT DO NOTHING
// skipped. Inserts that may collide skip rather than fail, because a failed
// statement aborts the whole PostgreSQL transaction and the caller may want
// to go on (look the row up, say).
func conflict(op, what string) error {
	return fmt.Errorf("%s: %w", op, herald.Errorf(herald.ECONFLICT, "This %s already exists.", what))
}

// encTime encodes t for a nullable time column: NULL for the zero time.
func encTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// decTime decodes a nullable time column: NULL is the zero time; every
// time comes back in UTC.
func decTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// lockKey maps a name to a 64-bit advisory lock key. FNV-1a is stable
// across versions and processes, so every instance computes the same key.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("herald:" + name))
	return int64(h.Sum64())
}
