package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald/digest"
	"herald/store/sqlite"
	"herald/store/storetest"
)

func TestDigestContract(t *testing.T) {
	storetest.RunDigest(t, func(t *testing.T) storetest.DigestStore { return open(t) })
}

// TestDigestQueriesUseIndexes checks the plans of the queries a build runs
// once per reader, so that a growing list or history never turns them into
// scans.
func TestDigestQueriesUseIndexes(t *testing.T) {
	db := open(t)
	tests := []struct {
		name, query string
		want        []string
		args        []any
	}{
		{"readers", `SELECT s.id FROM subscriber_newsletters n CROSS JOIN subscribers s ON s.id = n.subscriber_id
            WHERE n.newsletter_id = ?1 AND n.subscriber_id > ?2 AND s.status = 'active' ORDER BY n.subscriber_id LIMIT ?3`,
			[]string{"subscriber_newsletters_newsletter"}, []any{"daily", 0, 10}},
		{"since", `SELECT i.created_at
            FROM messages m INDEXED BY messages_subscriber_issue CROSS JOIN issues i ON i.id = m.issue_id
            WHERE m.subscriber_id = ?2 AND m.issue_id IS NOT NULL AND m.kind = 'digest'
              AND m.status IN ('queued', 'sending', 'sent') AND i.newsletter_id = ?1
            ORDER BY m.issue_id DESC LIMIT 1`,
			[]string{"messages_subscriber_issue", "INTEGER PRIMARY KEY"}, []any{"daily", 1}},
		{"last enqueued", `SELECT coalesce(max(subscriber_id), 0) FROM messages WHERE issue_id = ?`,
			[]string{"messages_issue_subscriber"}, []any{1}},
		{"progress", `SELECT status, count(*) FROM messages WHERE issue_id = ? GROUP BY status`,
			[]string{"messages_issue_status"}, []any{1}},
		{"last issue", `SELECT id FROM issues WHERE newsletter_id = ? ORDER BY slot_at DESC LIMIT 1`,
			[]string{"sqlite_autoindex_issues_1"}, []any{"daily"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := db.Explain(t.Context(), tt.query, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(plan, w) {
					t.Errorf("plan does not use %s:\n%s", w, plan)
				}
			}
			if strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("plan sorts:\n%s", plan)
			}
		})
	}
}

// seedReaders fills a new database with n active subscribers of "daily"
// (every tenth also of "weekly"), and a history of issues: each subscriber
// received every one of history issues, alternating daily and weekly. It
// writes through raw SQL: the seed is not what is measured.
func seedReaders(b testing.TB, n, history int) *sqlite.DB {
	b.Helper()
	path := filepath.Join(b.TempDir(), "herald.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	raw, err := sqlite.OpenRaw(path)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	stmts := []string{
		fmt.Sprintf(`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %d)
            INSERT INTO subscribers (id, email, name, status, created_at, updated_at)
            SELECT i, 'reader' || i || '@example.org', 'Reader ' || i, 'active', 0, 0 FROM seq`, n),
		`INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id) SELECT id, 'daily' FROM subscribers`,
		`INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id) SELECT id, 'weekly' FROM subscribers WHERE id % 10 = 0`,
	}
	for h := 1; h <= history; h++ {
		newsletter := "daily"
		if h%2 == 0 {
			newsletter = "weekly"
		}
		stmts = append(stmts,
			fmt.Sprintf(`INSERT INTO issues (id, newsletter_id, slot_at, status, created_at, readers)
                VALUES (%d, '%s', %d, 'sent', %d, %d)`, h, newsletter, h*1000, h*1000, n),
			fmt.Sprintf(`INSERT INTO messages (kind, subscriber_id, issue_id, message_id, priority, status,
                next_attempt_at, created_at, updated_at)
                SELECT 'digest', id, %d, 'm.%d.' || id, 10, 'sent', 0, 0, 0 FROM subscribers`, h, h))
	}
	stmts = append(stmts, `ANALYZE`)
	for _, q := range stmts {
		if _, err := raw.Exec(q); err != nil {
			b.Fatalf("seed: %v\n%s", err, q)
		}
	}
	return db
}

// BenchmarkReaders reads every reader of a 100,000-reader newsletter in
// pages of digest.DefaultBatchSize, with their Since, as a build does.
func BenchmarkReaders(b *testing.B) {
	for _, history := range []int{1, 30} {
		b.Run(fmt.Sprintf("100k/history=%d", history), func(b *testing.B) {
			const n = 100_000
			db := seedReaders(b, n, history)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				var after int64
				total := 0
				for {
					page, err := db.Readers(ctx, "daily", after, digest.DefaultBatchSize, time.Now())
					if err != nil {
						b.Fatal(err)
					}
					total += len(page)
					if len(page) < digest.DefaultBatchSize {
						break
					}
					if page[0].Since.IsZero() {
						b.Fatal("reader without Since")
					}
					after = page[len(page)-1].SubscriberID
				}
				if total != n {
					b.Fatalf("read %d readers, want %d", total, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/pass")
		})
	}
}

// TestReadersSinceOverHistory: with issues of two newsletters interleaved,
// Since is the creation time of the reader's latest issue of the one asked.
func TestReadersSinceOverHistory(t *testing.T) {
	db := seedReaders(t, 100, 4)
	for _, tt := range []struct {
		newsletter string
		want       time.Time
	}{
		{"daily", time.UnixMilli(3000).UTC()},  // issues 1 and 3
		{"weekly", time.UnixMilli(4000).UTC()}, // issues 2 and 4
	} {
		page, err := db.Readers(t.Context(), tt.newsletter, 0, 10, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 || !page[0].Since.Equal(tt.want) {
			t.Fatalf("%s: Readers = %+v, want Since %v", tt.newsletter, page, tt.want)
		}
	}
}
