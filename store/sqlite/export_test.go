package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// OpenRaw opens the file with no pool discipline, for tests that poke at it.
func OpenRaw(path string) (*sql.DB, error) {
	return sql.Open("sqlite3", path+"?_foreign_keys=on&_busy_timeout=5000")
}

// Pragmas reports the settings of one writer and one reader connection.
func (db *DB) Pragmas(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range []struct {
		name string
		pool *sql.DB
	}{{"writer", db.writer}, {"reader", db.reader}} {
		for _, pragma := range []string{"journal_mode", "foreign_keys", "synchronous", "busy_timeout", "query_only"} {
			var v string
			if err := p.pool.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&v); err != nil {
				return nil, fmt.Errorf("%s %s: %w", p.name, pragma, err)
			}
			out[p.name+" "+pragma] = v
		}
	}
	return out, nil
}

// DeleteSubscriber deletes a row, to test the cascades.
func (db *DB) DeleteSubscriber(ctx context.Context, id int64) error {
	_, err := db.writer.ExecContext(ctx, `DELETE FROM subscribers WHERE id = ?`, id)
	return err
}

// Analyze gathers the planner's statistics on the writer, as Herald does
// after bulk writes.
func (db *DB) Analyze(ctx context.Context) error {
	_, err := db.writer.ExecContext(ctx, `ANALYZE`)
	return err
}

// ExplainClaim returns the query plan of the claim statement, one line per step.
func (db *DB) ExplainClaim(ctx context.Context) (string, error) {
	now := time.Now()
	return db.explain(ctx, claimSQL, "x", now.UnixMilli(), now.UnixMilli(), 500)
}

// ExplainSettleSent analyses the database (as Herald does after bulk
// writes), then returns the query plan of the statement that settles a run
// of sent messages, one line per step.
func (db *DB) ExplainSettleSent(ctx context.Context) (string, error) {
	if err := db.Analyze(ctx); err != nil {
		return "", err
	}
	return db.explain(ctx, settleSentSQL, time.Now().UnixMilli(), "[1,2,3]", "x")
}

// explain returns the query plan of q with args on the writer, one line
// per step.
func (db *DB) explain(ctx context.Context, q string, args ...any) (string, error) {
	return explainOn(ctx, db.writer, q, args...)
}

// explainOn returns the query plan of q with args on pool, one line per
// step.
func explainOn(ctx context.Context, pool *sql.DB, q string, args ...any) (string, error) {
	rows, err := pool.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s\n", detail)
	}
	return b.String(), rows.Err()
}
