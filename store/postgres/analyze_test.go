package postgres_test

import (
	"fmt"
	"strings"
	"testing"

	"herald/subscribers"
)

// An import that adds many subscribers leaves the planner statistics of
// the tables it filled fresh, so that the next issue's reader pages are
// not planned for empty tables (with autovacuum off, as on this machine's
// server, they would never be); a small import and a dry run leave them.
func TestImportAnalyzesSubscribers(t *testing.T) {
	requireServer(t)
	schema := newSchema(t)
	db := openIn(t, schema)
	ctx := t.Context()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn := admin(t)
	svc, err := subscribers.NewService(ctx, db, subscribers.Options{Newsletters: []string{"daily"}, MessageIDDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	analyzed := func() bool {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_user_tables
            WHERE schemaname = $1 AND relname IN ('subscribers', 'subscriber_newsletters')
              AND last_analyze IS NOT NULL`, schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 2
	}
	csvOf := func(from, n int) string {
		var b strings.Builder
		b.WriteString("email,name,newsletters\n")
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, "reader%d@example.org,Reader %d,daily\n", i, i)
		}
		return b.String()
	}
	opts := subscribers.ImportOptions{Status: subscribers.StatusActive}

	if _, err := svc.Import(ctx, strings.NewReader(csvOf(0, 10)), opts, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.DryRun().Import(ctx, strings.NewReader(csvOf(100, subscribers.AnalyzeAfter)), opts, nil, nil); err != nil {
		t.Fatal(err)
	}
	if analyzed() {
		t.Fatal("a 10-row import or a dry run analyzed the tables")
	}
	st, err := svc.Import(ctx, strings.NewReader(csvOf(100, subscribers.AnalyzeAfter)), opts, nil, nil)
	if err != nil || st.Created != subscribers.AnalyzeAfter {
		t.Fatalf("import: %+v, %v", st, err)
	}
	if !analyzed() {
		t.Errorf("after importing %d subscribers, subscribers and subscriber_newsletters have no statistics", st.Created)
	}
}
