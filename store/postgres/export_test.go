package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Exec runs SQL on the pool, as an operator (or a bug) would.
func (db *DB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := db.pool.Exec(ctx, query, args...)
	return err
}

// QueryInt runs a query returning one integer.
func (db *DB) QueryInt(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// ExplainClaim returns the plan of the claim statement with sequential scans
// discouraged, so that it shows whether the indexes can serve it even on a
// table too small for the planner to bother.
func (db *DB) ExplainClaim(ctx context.Context) (string, error) {
	var b strings.Builder
	err := db.inTx(ctx, func(t pgx.Tx) error {
		if _, err := t.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		now := time.Now()
		rows, err := t.Query(ctx, "EXPLAIN "+claimSQL, "x", now, now.Add(time.Minute), 500)
		if err != nil {
			return err
		}
		var line string
		_, err = pgx.ForEachRow(rows, []any{&line}, func() error {
			b.WriteString(line + "\n")
			return nil
		})
		return err
	})
	return b.String(), err
}

// LeaderKey exposes the advisory lock key of a leader name.
func (db *DB) LeaderKey(name string) int64 { return db.leaderKey(name) }

// MigrationCount returns how many migrations the package embeds.
func MigrationCount() int {
	ms, err := shipped()
	if err != nil {
		panic(err)
	}
	return len(ms)
}
