package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"herald"
)

// leader is one held leader lock: the pooled connection whose session owns
// the advisory lock.
type leader struct {
	db   *DB
	conn *pgxpool.Conn
	key  int64
	once sync.Once
}

// leaderUnlockTimeout bounds the unlock on release; past it the connection
// is closed instead, which releases the lock as surely.
const leaderUnlockTimeout = 5 * time.Second

// TryLeader tries, without waiting, to become the one instance holding the
// lock called name (say "digest-scheduler") among every Herald instance on
// this database schema. When ok, the lock is held by a session-level advisory lock
// on a pooled connection set aside for it, until release is called, Close
// is called, or the connection dies: when an instance crashes or loses its
// network, PostgreSQL ends its session and the lock passes to the next
// instance that asks. release may be called more than once. When another
// instance holds the lock, ok is false and err nil.
//
// The lock cannot tell its holder that the connection died; work done as
// leader should still be safe to repeat (a unique row per issue and
// subscriber makes a second send impossible), and a leader should call
// TryLeader again on each round rather than hold the lock for hours, or
// keep it with Leadership, which checks the connection on each round.
func (db *DB) TryLeader(ctx context.Context, name string) (release func(), ok bool, err error) {
	l, err := db.tryLeader(ctx, name)
	if l == nil {
		return nil, false, err
	}
	return l.release, true, nil
}

// tryLeader is TryLeader returning the held lock, or nil.
func (db *DB) tryLeader(ctx context.Context, name string) (*leader, error) {
	db.mu.Lock()
	closed := db.closed
	db.mu.Unlock()
	if closed {
		return nil, herald.Errorf(herald.EUNAVAILABLE, "The database is closed.")
	}
	op := fmt.Sprintf("try leader %q", name)
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, translate(err, op, "")
	}
	key := db.leaderKey(name)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, translate(err, op, "")
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	l := &leader{db: db, conn: conn, key: key}
	db.mu.Lock()
	if db.closed { // Close ran meanwhile and did not see l
		db.mu.Unlock()
		l.release()
		return nil, herald.Errorf(herald.EUNAVAILABLE, "The database is closed.")
	}
	db.leaders[l] = struct{}{}
	db.mu.Unlock()
	return l, nil
}

// leaderKey is the advisory lock key of the leader lock called name. Locks
// are per database, not per schema: the key includes the schema, so that
// two Herald sites in two schemas of one database each elect their own
// leader.
func (db *DB) leaderKey(name string) int64 {
	return lockKey("leader:" + db.schema + ":" + name)
}

// Leadership keeps this instance the leader called name for as long as it
// can: unlike TryLeader's grant, which lasts one round, the lock is kept
// from one call of Lead to the next, so that leadership moves only when the
// leader stops or dies. It is safe for concurrent use.
type Leadership struct {
	db   *DB
	name string

	mu   sync.Mutex
	held *leader
}

// Leadership returns a holder of the leader lock called name, not yet held.
func (db *DB) Leadership(name string) *Leadership {
	return &Leadership{db: db, name: name}
}

// Lead reports whether this instance leads. When it holds the lock already,
// it checks that the session holding it is alive (its connection answers),
// and if not gives the lock up and tries afresh: a session that died has
// lost the lock, and another instance may have it now. When it does not
// hold the lock, it tries to take it, without waiting. The release it
// returns does nothing, since the lock is kept for the next call; the
// signature is that of digest.Scheduler.Leader. Resign or Close gives the
// lock up.
func (l *Leadership) Lead(ctx context.Context) (release func(), ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != nil {
		if err := l.held.conn.Ping(ctx); err == nil {
			return func() {}, true, nil
		}
		l.held.release()
		l.held = nil
	}
	held, err := l.db.tryLeader(ctx, l.name)
	if held == nil {
		return nil, false, err
	}
	l.held = held
	return func() {}, true, nil
}

// Resign gives the lock up, if held, so that another instance may take it
// at once rather than when this one's connection closes.
func (l *Leadership) Resign() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != nil {
		l.held.release()
		l.held = nil
	}
}

// release unlocks and hands the connection back to the pool; if the unlock
// fails, the connection is closed, which ends the session and its locks.
func (l *leader) release() {
	l.once.Do(func() {
		l.db.mu.Lock()
		delete(l.db.leaders, l)
		l.db.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), leaderUnlockTimeout)
		defer cancel()
		var unlocked bool
		if err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, l.key).Scan(&unlocked); err != nil || !unlocked {
			// A closed connection is destroyed, not reused, by Release.
			_ = l.conn.Conn().Close(ctx)
		}
		l.conn.Release()
	})
}
