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
// this database. When ok, the lock is held by a session-level advisory lock
// on a pooled connection set aside for it, until release is called, Close
// is called, or the connection dies: when an instance crashes or loses its
// network, PostgreSQL ends its session and the lock passes to the next
// instance that asks. release may be called more than once. When another
// instance holds the lock, ok is false and err nil.
//
// The lock cannot tell its holder that the connection died; work done as
// leader should still be safe to repeat (a unique row per issue and
// subscriber makes a second send impossible), and a leader should call
// TryLeader again on each round rather than hold the lock for hours.
func (db *DB) TryLeader(ctx context.Context, name string) (release func(), ok bool, err error) {
	db.mu.Lock()
	closed := db.closed
	db.mu.Unlock()
	if closed {
		return nil, false, herald.Errorf(herald.EUNAVAILABLE, "The database is closed.")
	}
	op := fmt.Sprintf("try leader %q", name)
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, false, translate(err, op, "")
	}
	key := lockKey("leader:" + name)
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, translate(err, op, "")
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	l := &leader{db: db, conn: conn, key: key}
	db.mu.Lock()
	if db.closed { // Close ran meanwhile and did not see l
		db.mu.Unlock()
		l.release()
		return nil, false, herald.Errorf(herald.EUNAVAILABLE, "The database is closed.")
	}
	db.leaders[l] = struct{}{}
	db.mu.Unlock()
	return l.release, true, nil
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
