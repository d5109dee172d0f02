package postgres_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"herald/articles"
	"herald/digest"
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

// An issue that queues AnalyzeAfter or more messages refreshes the
// outbox's statistics while it is built, so the engine's claims during the
// send are planned for the rows that are there.
func TestIssueBuildAnalyzesMessages(t *testing.T) {
	requireServer(t)
	schema := newSchema(t)
	db := openIn(t, schema)
	ctx := t.Context()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn := admin(t)
	subs, err := subscribers.NewService(ctx, db, subscribers.Options{Newsletters: []string{"daily"}, MessageIDDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("email,newsletters\n")
	for i := range digest.AnalyzeAfter {
		fmt.Fprintf(&b, "reader%d@example.org,daily\n", i)
	}
	if st, err := subs.Import(ctx, strings.NewReader(b.String()), subscribers.ImportOptions{Status: subscribers.StatusActive}, nil, nil); err != nil || st.Created != digest.AnalyzeAfter {
		t.Fatalf("import: %+v, %v", st, err)
	}
	arts := articles.NewService(db, articles.Options{})
	if _, err := arts.UpsertMany(ctx, []articles.Article{{URL: "https://passblue.example/a", Title: "A story",
		PublishedAt: time.Now().Add(-time.Hour), Source: articles.SourceAPI}}); err != nil {
		t.Fatal(err)
	}
	analyzedAt := func() time.Time {
		t.Helper()
		var at pgtype.Timestamptz
		if err := conn.QueryRow(ctx, `SELECT last_analyze FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'messages'`,
			schema).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at.Time
	}
	if !analyzedAt().IsZero() {
		t.Fatal("messages analysed before any issue")
	}
	svc, err := digest.NewService(db, db, []digest.Newsletter{{ID: "daily", Name: "The Daily"}}, digest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := svc.SendNow(ctx, "daily")
	if err != nil || iss.Readers != digest.AnalyzeAfter {
		t.Fatalf("SendNow = %+v, %v", iss, err)
	}
	if analyzedAt().IsZero() {
		t.Errorf("an issue queued %d messages and the outbox has no statistics", iss.Readers)
	}
}
