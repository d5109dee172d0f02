package sqlite

import "context"

// Explain returns the query plan of query on a reader, one line per step.
func (db *DB) Explain(ctx context.Context, query string, args ...any) (string, error) {
	return explainOn(ctx, db.reader, query, args...)
}
