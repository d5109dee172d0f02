package postgres

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// limitWindow is the length of one counter of SignupLimits: limits are per
// minute.
const limitWindow = time.Minute

// limitPurgeEvery is how often an instance deletes dead counters and
// expired solutions.
const limitPurgeEvery = time.Minute

// SignupLimits keeps the signup defences' counts in the database, so that
// every Herald instance on it sees the same ones: per-IP and per-subnet
// counters, the signup rate and end of attack mode, and the proof-of-work
// solutions already spent. It implements web.SignupLimits; each call is one
// round trip.
//
// A counter is a sliding window over the last minute, estimated from two
// fixed ones as rate limiters commonly do: this minute's count plus the
// previous minute's, weighted by how much of the previous minute the last
// 60 seconds still cover. A burst of n events within one minute counts n
// exactly. An event refused is not counted, so a client that keeps trying
// while refused does not lengthen its own wait.
type SignupLimits struct {
	db  *DB
	log *slog.Logger
	// lastPurge is the Unix second of the last purge this instance started.
	lastPurge atomic.Int64
}

// NewSignupLimits returns the database's signup limits. Purge failures go
// to log (nil discards).
func NewSignupLimits(db *DB, log *slog.Logger) *SignupLimits {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SignupLimits{db: db, log: log}
}

// hitSQL counts one event unless the window has reached the limit ($4; 0:
// none), in one statement: the INSERT's ON CONFLICT takes the row's lock and
// checks the limit against its latest count, so that instances counting at
// once never let more than the limit through. It returns the count after
// this event (NULL when refused), the previous minute's count, and this
// minute's count before this statement.
const hitSQL = `WITH prev AS (
    SELECT hits FROM signup_counters WHERE win = $1::bigint - 1 AND kind = $2 AND key_hash = $3
), cur AS (
    INSERT INTO signup_counters AS c (win, kind, key_hash, hits)
    SELECT $1, $2, $3, 1
    WHERE $4::integer = 0 OR coalesce((SELECT hits FROM prev), 0) * $5::float8 < $4::integer
    ON CONFLICT (win, kind, key_hash) DO UPDATE SET hits = c.hits + 1
    WHERE $4::integer = 0 OR c.hits + coalesce((SELECT hits FROM prev), 0) * $5::float8 < $4::integer
    RETURNING hits
)
SELECT (SELECT hits FROM cur),
    coalesce((SELECT hits FROM prev), 0),
    coalesce((SELECT hits FROM signup_counters WHERE win = $1 AND kind = $2 AND key_hash = $3), 0)`

// Hit counts one event at now against the counter (kind, key) unless its
// events over the last minute have reached limit (0: no limit). It returns
// the events over the last minute, this one included when counted, whether
// it was counted, and when it was not, how long until one would be.
func (l *SignupLimits) Hit(ctx context.Context, kind string, key []byte, limit int, now time.Time) (int, bool, time.Duration, error) {
	if key == nil {
		key = []byte{}
	}
	win, weight := limitWindowOf(now)
	var counted *int
	var prev, cur int
	err := l.db.pool.QueryRow(ctx, hitSQL, win, kind, key, limit, weight).Scan(&counted, &prev, &cur)
	if err != nil {
		return 0, false, 0, translate(err, "count signup", "")
	}
	l.purgeNow(now)
	prevPart := int(float64(prev) * weight)
	if counted != nil {
		return *counted + prevPart, true, 0, nil
	}
	return cur + prevPart, false, limitWait(limit, prev, cur, now), nil
}

// limitWindowOf returns the minute now falls in and the weight of the
// previous minute in the last 60 seconds.
func limitWindowOf(now time.Time) (win int64, weight float64) {
	win = now.Unix() / int64(limitWindow/time.Second)
	start := time.Unix(win*int64(limitWindow/time.Second), 0)
	return win, 1 - float64(now.Sub(start))/float64(limitWindow)
}

// limitWait is how long after now a counter with cur events this minute
// and prev the minute before lets one more through under limit.
func limitWait(limit, prev, cur int, now time.Time) time.Duration {
	win, weight := limitWindowOf(now)
	elapsed := 1 - weight
	if cur < limit && prev > 0 {
		// This minute: prev * (1 - f) < limit - cur once f is past need.
		need := 1 - float64(limit-cur)/float64(prev)
		return max(time.Duration((need-elapsed)*float64(limitWindow)), time.Millisecond)
	}
	// The next minute: cur becomes the previous one.
	next := time.Unix((win+1)*int64(limitWindow/time.Second), 0)
	wait := next.Sub(now)
	if cur > 0 {
		wait += time.Duration(max(0, 1-float64(limit)/float64(cur)) * float64(limitWindow))
	}
	return max(wait, time.Millisecond)
}

// AttackUntil returns when attack mode ends; zero when it never was on.
func (l *SignupLimits) AttackUntil(ctx context.Context) (time.Time, error) {
	var until time.Time
	err := l.db.pool.QueryRow(ctx, `SELECT ends_at FROM signup_attack WHERE id = 1`).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, translate(err, "read attack mode", "")
	}
	return until, nil
}

// ExtendAttack makes attack mode last at least until until, and returns
// when it now ends.
func (l *SignupLimits) ExtendAttack(ctx context.Context, until time.Time) (time.Time, error) {
	var ends time.Time
	err := l.db.pool.QueryRow(ctx, `INSERT INTO signup_attack AS a (id, ends_at) VALUES (1, $1)
        ON CONFLICT (id) DO UPDATE SET ends_at = greatest(a.ends_at, excluded.ends_at)
        RETURNING ends_at`, until).Scan(&ends)
	if err != nil {
		return time.Time{}, translate(err, "extend attack mode", "")
	}
	return ends, nil
}

// Spend records the solution id as spent until expires. It reports false
// when it already was, by any instance.
func (l *SignupLimits) Spend(ctx context.Context, id []byte, expires time.Time) (bool, error) {
	tag, err := l.db.pool.Exec(ctx, `INSERT INTO signup_spent (id_hash, expires_at) VALUES ($1, $2)
        ON CONFLICT (id_hash) DO NOTHING`, id, expires)
	if err != nil {
		return false, translate(err, "spend solution", "")
	}
	return tag.RowsAffected() == 1, nil
}

// Purge deletes the counters of minutes before the last one before now,
// and the solutions expired by the wall clock (which their expiry is
// stamped by).
func (l *SignupLimits) Purge(ctx context.Context, now time.Time) error {
	win, _ := limitWindowOf(now)
	if _, err := l.db.pool.Exec(ctx, `DELETE FROM signup_counters WHERE win < $1`, win-1); err != nil {
		return translate(err, "purge signup counters", "")
	}
	if _, err := l.db.pool.Exec(ctx, `DELETE FROM signup_spent WHERE expires_at < $1`, time.Now()); err != nil {
		return translate(err, "purge spent solutions", "")
	}
	return nil
}

// purgeNow starts a Purge in the background when this instance has not
// started one for limitPurgeEvery. Every instance purges: a purge that
// finds nothing costs an index lookup.
func (l *SignupLimits) purgeNow(now time.Time) {
	last := l.lastPurge.Load()
	sec := now.Unix()
	if sec-last < int64(limitPurgeEvery/time.Second) && sec >= last {
		return
	}
	if !l.lastPurge.CompareAndSwap(last, sec) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Purge(ctx, now); err != nil {
			l.log.Warn("purge signup limits", "error", err)
		}
	}()
}
