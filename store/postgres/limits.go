package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
// round trip, a signup's two limit checks included.
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

// hitSQL returns the statement that counts one event against k counters in
// turn, each unless its window has reached its limit, stopping at the first
// that has: counter i's INSERT selects from counter i-1's RETURNING, so it
// inserts nothing once one refused. Each INSERT's ON CONFLICT takes the
// row's lock and checks the limit against its latest count, so that
// instances counting at once never let more than the limit through. For
// each counter the statement returns its count after this event (NULL when
// not counted), the previous minute's count, and this minute's count before
// the statement. $1 is the minute, $2 the previous minute's weight; counter
// i's kind, key and limit (0: none) are $3+3i, $4+3i, $5+3i.
func hitSQL(k int) string {
	var with, sel []string
	for i := range k {
		kind, key, limit := 3+3*i, 4+3*i, 5+3*i
		match := fmt.Sprintf("kind = $%d AND key_hash = $%d", kind, key)
		from := ""
		if i > 0 {
			from = fmt.Sprintf(" FROM c%d", i-1)
		}
		under := fmt.Sprintf("$%d::integer = 0 OR %%s + coalesce((SELECT hits FROM p%d), 0) * $2::float8 < $%d::integer", limit, i, limit)
		with = append(with, fmt.Sprintf(`p%d AS (
    SELECT hits FROM signup_counters WHERE win = $1::bigint - 1 AND %s
), c%d AS (
    INSERT INTO signup_counters AS c (win, kind, key_hash, hits)
    SELECT $1, $%d, $%d, 1%s WHERE %s
    ON CONFLICT (win, kind, key_hash) DO UPDATE SET hits = c.hits + 1 WHERE %s
    RETURNING hits
)`, i, match, i, kind, key, from, fmt.Sprintf(under, "0"), fmt.Sprintf(under, "c.hits")))
		sel = append(sel, fmt.Sprintf(`(SELECT hits FROM c%d), coalesce((SELECT hits FROM p%d), 0),
    coalesce((SELECT hits FROM signup_counters WHERE win = $1 AND %s), 0)`, i, i, match))
	}
	return "WITH " + strings.Join(with, ", ") + "\nSELECT " + strings.Join(sel, ",\n    ")
}

// hitSQLs are hitSQL(1) to hitSQL(maxHits), built once.
var hitSQLs = func() []string {
	out := make([]string, maxHits+1)
	for k := 1; k <= maxHits; k++ {
		out[k] = hitSQL(k)
	}
	return out
}()

// maxHits is the most counters one Hit takes: a signup has two.
const maxHits = 4

// Hit counts one event at now against each counter in turn, kinds[i] and
// keys[i] under limits[i] (0: no limit), and stops at the first whose
// events over the last minute have reached its limit: the counters before
// it count the event, it and those after do not. It returns that
// counter's index (-1 when every counter counted the event) and how long
// until it would count one, and the events over the last minute of the
// last counter that counted, this one included. One statement, one round
// trip.
func (l *SignupLimits) Hit(ctx context.Context, now time.Time, kinds []string, keys [][]byte, limits []int) (refused, n int, wait time.Duration, err error) {
	k := len(kinds)
	if k == 0 || k > maxHits || len(keys) != k || len(limits) != k {
		return -1, 0, 0, fmt.Errorf("count signup: want 1 to %d counters with a key and a limit each, got %d, %d, %d", maxHits, k, len(keys), len(limits))
	}
	win, weight := limitWindowOf(now)
	args := []any{win, weight}
	for i := range k {
		key := keys[i]
		if key == nil {
			key = []byte{}
		}
		args = append(args, kinds[i], key, limits[i])
	}
	counted := make([]*int, k)
	prev, cur := make([]int, k), make([]int, k)
	dest := make([]any, 0, 3*k)
	for i := range k {
		dest = append(dest, &counted[i], &prev[i], &cur[i])
	}
	if err := l.db.pool.QueryRow(ctx, hitSQLs[k], args...).Scan(dest...); err != nil {
		return -1, 0, 0, translate(err, "count signup", "")
	}
	l.purgeNow(now)
	for i := range k {
		prevPart := int(float64(prev[i]) * weight)
		if counted[i] == nil {
			return i, cur[i] + prevPart, limitWait(limits[i], prev[i], cur[i], now), nil
		}
		n = *counted[i] + prevPart
	}
	return -1, n, 0, nil
}

// Add counts n events at now against the counter (kind, key), without a
// limit, and returns the events over the last minute, these included. An
// instance adds up its signups for attack mode's rate and adds them once a
// second, so that the rate's one row is not written by every signup.
func (l *SignupLimits) Add(ctx context.Context, now time.Time, kind string, key []byte, n int) (int, error) {
	if key == nil {
		key = []byte{}
	}
	win, weight := limitWindowOf(now)
	var total, prev int
	err := l.db.pool.QueryRow(ctx, `WITH prev AS (
    SELECT hits FROM signup_counters WHERE win = $1::bigint - 1 AND kind = $2 AND key_hash = $3
), cur AS (
    INSERT INTO signup_counters AS c (win, kind, key_hash, hits) VALUES ($1, $2, $3, $4)
    ON CONFLICT (win, kind, key_hash) DO UPDATE SET hits = c.hits + excluded.hits
    RETURNING hits
)
SELECT (SELECT hits FROM cur), coalesce((SELECT hits FROM prev), 0)`, win, kind, key, n).Scan(&total, &prev)
	if err != nil {
		return 0, translate(err, "count signups", "")
	}
	l.purgeNow(now)
	return total + int(float64(prev)*weight), nil
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
