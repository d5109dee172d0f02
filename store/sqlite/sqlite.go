// Package sqlite is Herald's SQLite store: it implements subscribers.Store
// and delivery.Store on one database file in WAL mode, with one writer
// connection (every write transaction is BEGIN IMMEDIATE, so two writers
// never deadlock upgrading a read lock) beside a pool of read-only
// connections.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	ckpt   *sql.DB // one connection for background WAL checkpoints
	now    func() time.Time
	// writerStmts holds the outbox's statements, prepared once on the
	// writer connection (see writerStmt in messages.go).
	writerStmts sync.Map // query string -> *sql.Stmt

	// Group commit: write transactions are handed to one loop that runs
	// whatever has queued up meanwhile in a single SQLite transaction.
	writes    chan *writeReq
	closing   chan struct{}
	loopDone  chan struct{}
	ckptDone  chan struct{}
	walReset  atomic.Bool // the WAL is long: finish a checkpoint between groups
	closeOnce sync.Once
	closeErr  error
}

// maxGroup bounds how many write transactions share one commit.
const maxGroup = 64

// writeReq is one write transaction waiting for the write loop.
type writeReq struct {
	ctx  context.Context
	fn   func(context.Context, *sql.Tx) error
	done chan error
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
		// Deleted rows are zeroed in their pages, so an erased reader's
		// address does not linger in free space (Scrub then clears the
		// WAL's older copies of those pages).
		"_secure_delete": {"on"},
	}
	// Page caches (SQLite's default is 2 MiB a connection): 32 MiB for the
	// writer, where every signup and outbox write walks the indexes of a
	// large list; 8 MiB for each reader. They are caps, filled only as a
	// database grows, and they are most of Herald's memory on a large list
	// (a million readers fill them all), so the readers stay small.
	w["_cache_size"] = []string{"-32768"}
	r := url.Values{"_query_only": {"1"}, "_cache_size": {"-8192"}}
	for k, v := range common {
		w[k], r[k] = v, v
	}

	// The writer never checkpoints: SQLite would otherwise copy the WAL
	// back into the database inside whichever commit crosses 1,000 pages,
	// stalling every write queued behind it. A separate connection does it
	// in the background instead (checkpointLoop).
	writer := sql.OpenDB(connector{dsn: path + "?" + w.Encode(), driver: &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			// When the WAL starts over, cut the file back to 64 MiB.
			_, err := c.Exec(`PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864`, nil)
			return err
		},
	}})
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
	ck := url.Values{"_cache_size": {"-1024"}} // it only copies pages back
	for k, v := range common {
		ck[k] = v
	}
	ckpt, err := sql.Open("sqlite3", path+"?"+ck.Encode())
	if err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
	}
	ckpt.SetMaxOpenConns(1)
	db := &DB{
		path: path, writer: writer, reader: reader, ckpt: ckpt, now: cfg.now,
		// Unbuffered: a send succeeds only when the loop takes the request,
		// so a request is never stranded in a buffer after Close.
		writes:   make(chan *writeReq),
		closing:  make(chan struct{}),
		loopDone: make(chan struct{}),
		ckptDone: make(chan struct{}),
	}
	go db.writeLoop()
	go db.checkpointLoop()
	return db, nil
}

// connector opens connections of one DSN through a configured driver, so
// the writer gets its connect hook without registering a global driver.
type connector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.driver }

// checkpointInterval is how often the background checkpoint runs.
const checkpointInterval = 250 * time.Millisecond

// walResetFrames is the WAL length (in pages) past which the write loop
// finishes a checkpoint itself, so that the WAL starts over instead of
// growing while writes never pause.
const walResetFrames = 4096

// checkpointLoop copies committed WAL pages back into the database file in
// the background until Close. PASSIVE checkpoints never wait for readers or
// the writer; whatever they cannot copy now, the next one does. Under a
// steady stream of writes they never catch up completely, so past
// walResetFrames the write loop is asked to finish the job between two
// groups (see writeLoop), when the remainder is small.
func (db *DB) checkpointLoop() {
	defer close(db.ckptDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-db.closing:
			return
		case <-t.C:
			var busy, frames, copied int
			// An error here (a busy lock) only delays the copy.
			if err := db.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err == nil && frames > walResetFrames {
				db.walReset.Store(true)
			}
		}
	}
}

// finishCheckpoint runs on the write loop between groups: with no write in
// flight a PASSIVE checkpoint completes (unless a reader still holds an old
// snapshot), and the next write transaction starts the WAL over.
func (db *DB) finishCheckpoint() {
	if db.walReset.CompareAndSwap(true, false) {
		_, _ = db.writer.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
	}
}

// Path returns the file the database was opened from.
func (db *DB) Path() string { return db.path }

// Close closes both connection pools, after letting SQLite refresh the
// statistics its query planner uses (PRAGMA optimize). The WAL is
// checkpointed when the last connection closes.
// Writes queued before Close still run; later ones fail with EUNAVAILABLE.
// Closing twice returns the first Close's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		close(db.closing)
		<-db.loopDone
		<-db.ckptDone
		_, err := db.writer.Exec(`PRAGMA optimize`)
		db.closeErr = errors.Join(err, db.ckpt.Close(), db.reader.Close(), db.writer.Close())
	})
	return db.closeErr
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

// errClosed answers writes that arrive after Close.
var errClosed = herald.Errorf(herald.EUNAVAILABLE, "The database is closed.")

// write runs fn as one write transaction: fn's changes are committed when it
// returns nil and discarded when it returns an error, which write returns as
// is.
//
// SQLite commits one transaction at a time, and a commit costs far more than
// the few statements of a signup, so write transactions queue for a single
// loop that runs everything waiting (up to maxGroup) inside one IMMEDIATE
// transaction, each in its own SAVEPOINT so that one failing rolls back only
// its own changes, then commits once. Every caller returns only after the
// commit that holds its changes, so each is exactly as durable as a lone
// commit: with synchronous=NORMAL in WAL mode that survives a crash of the
// process, while a power cut may lose the last commits (never corrupt the
// file). fn must not call db's write methods (it would wait for itself).
//
// fn receives ctx without its cancellation: once a write has started inside
// a group it runs to its end (the driver would otherwise start a goroutine
// per statement to watch for cancellation).
func (db *DB) write(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case db.writes <- req:
	case <-db.closing:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the loop always answers: it skips a request whose context
	// has ended, and otherwise runs it, so its outcome is never unknown.
	return <-req.done
}

// writeLoop runs queued write transactions in groups until Close.
func (db *DB) writeLoop() {
	defer close(db.loopDone)
	group := make([]*writeReq, 0, maxGroup)
	for {
		select {
		case req := <-db.writes:
			group = append(group[:0], req)
		case <-db.closing:
			for { // answer whatever was queued before Close
				select {
				case req := <-db.writes:
					db.runGroup([]*writeReq{req})
				default:
					return
				}
			}
		}
	fill:
		for len(group) < maxGroup {
			select {
			case req := <-db.writes:
				group = append(group, req)
			default:
				break fill
			}
		}
		db.runGroup(group)
		db.finishCheckpoint()
	}
}

// runGroup runs a group of write transactions in one SQLite transaction and
// answers each request.
func (db *DB) runGroup(group []*writeReq) {
	errs := make([]error, len(group))
	answer := func() {
		for i, req := range group {
			req.done <- errs[i]
		}
	}
	t, err := db.writer.BeginTx(context.Background(), nil)
	if err != nil {
		err = translate(err, "begin", "")
		for i := range errs {
			errs[i] = err
		}
		answer()
		return
	}
	ok := 0
	for i, req := range group {
		if err := req.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		ctx := context.WithoutCancel(req.ctx)
		if len(group) == 1 {
			errs[i] = safeCall(ctx, t, req.fn)
		} else {
			errs[i] = db.inSavepoint(ctx, t, req.fn)
		}
		if errs[i] == nil {
			ok++
		} else if errors.Is(errs[i], errTxBroken) {
			t.Rollback()
			for j := range errs {
				errs[j] = errs[i]
			}
			answer()
			return
		}
	}
	switch {
	case ok == 0:
		t.Rollback()
	case len(group) == 1 && errs[0] != nil:
		t.Rollback()
	default:
		if err := t.Commit(); err != nil {
			err = translate(err, "commit", "")
			for i := range errs {
				if errs[i] == nil {
					errs[i] = err
				}
			}
		}
	}
	answer()
}

// safeCall runs one write transaction's fn, turning a panic into that
// transaction's error: the write loop serves every writer of the process and
// must not die with one of them.
func safeCall(ctx context.Context, t *sql.Tx, fn func(context.Context, *sql.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write transaction panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx, t)
}

// errTxBroken means a savepoint could not be rolled back, so the whole group
// transaction is abandoned.
var errTxBroken = herald.Errorf(herald.EUNAVAILABLE, "The database could not complete the write. Please try again.")

// inSavepoint runs fn inside a savepoint of t, undoing its changes if it
// fails.
func (db *DB) inSavepoint(ctx context.Context, t *sql.Tx, fn func(context.Context, *sql.Tx) error) error {
	if _, err := t.Exec(`SAVEPOINT w`); err != nil {
		return fmt.Errorf("savepoint: %w: %w", errTxBroken, err)
	}
	if err := safeCall(ctx, t, fn); err != nil {
		if _, rerr := t.Exec(`ROLLBACK TO w`); rerr != nil {
			return fmt.Errorf("rollback to savepoint: %w: %w", errTxBroken, rerr)
		}
		if _, rerr := t.Exec(`RELEASE w`); rerr != nil {
			return fmt.Errorf("release savepoint: %w: %w", errTxBroken, rerr)
		}
		return err
	}
	if _, err := t.Exec(`RELEASE w`); err != nil {
		return fmt.Errorf("release savepoint: %w: %w", errTxBroken, err)
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
