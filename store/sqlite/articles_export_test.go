package sqlite

import (
	"context"
	"fmt"
	"strings"
)

// Explain returns the query plan of query, one line per step.
func (db *DB) Explain(ctx context.Context, query string, args ...any) (string, error) {
	rows, err := db.reader.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
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
