package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/subscribers"
)

// rowVersionsHolding counts the row versions, live or dead, in the pages of
// schema.table whose data hold needle (pageinspect).
func rowVersionsHolding(t *testing.T, conn *pgx.Conn, schema, table, needle string) int {
	t.Helper()
	rel := pgx.Identifier{schema, table}.Sanitize()
	var n int
	err := conn.QueryRow(t.Context(), `SELECT count(*)
        FROM generate_series(0, (pg_relation_size($1::text::regclass) / current_setting('block_size')::bigint)::int - 1) AS b,
            LATERAL heap_page_items(get_raw_page($1::text, b)) AS i
        WHERE position(convert_to($2, 'UTF8') IN i.t_data) > 0`, rel, needle).Scan(&n)
	if err != nil {
		t.Fatalf("read the pages of %s: %v", rel, err)
	}
	return n
}

// TestScrubPrunesErasedRows: a DELETE leaves the erased reader's row
// versions in the table's pages (MVCC); Scrub prunes them from subscribers
// and consents. It reads the pages with pageinspect, and is skipped where
// the extension is not available.
func TestScrubPrunesErasedRows(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	db := openIn(t, schema)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn := admin(t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pageinspect`); err != nil {
		// Another test run may have created it meanwhile.
		var ok bool
		if err2 := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pageinspect')`).Scan(&ok); err2 != nil || !ok {
			if os.Getenv("CI") == "true" {
				t.Fatalf("pageinspect is not available (it ships with Debian's postgresql package): %v", err)
			}
			t.Skipf("pageinspect is not available: %v", err)
		}
	}

	email, ip := "erase-me-"+schema+"@example.org", "198.51.100.77"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var id int64
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		s := &subscribers.Subscriber{Email: email, Name: "Erase Me", Status: subscribers.StatusPending,
			Newsletters: []string{"daily"}, CreatedAt: now, UpdatedAt: now}
		if err := tx.CreateSubscriber(s); err != nil {
			return err
		}
		id = s.ID
		// A second version of the row: both must go.
		s.Status, s.ConfirmedAt = subscribers.StatusActive, now
		if err := tx.UpdateSubscriber(s); err != nil {
			return err
		}
		return tx.AddConsent(&subscribers.Consent{SubscriberID: id, CreatedAt: now, IP: ip, Newsletters: []string{"daily"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	// A neighbour keeps the pages in use.
	if err := db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.CreateSubscriber(&subscribers.Subscriber{Email: "stays@example.org", Status: subscribers.StatusActive, CreatedAt: now, UpdatedAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	if n := rowVersionsHolding(t, conn, schema, "subscribers", email); n == 0 {
		t.Fatal("the page reader does not find the live row: the test would prove nothing")
	}

	err = db.Update(ctx, func(tx subscribers.Tx) error {
		ptx, ok := tx.(subscribers.PrivacyTx)
		if !ok {
			return fmt.Errorf("%T is not a subscribers.PrivacyTx", tx)
		}
		return ptx.EraseSubscriber(id)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the DELETE, before Scrub: %d versions of the row in subscribers, %d in consents",
		rowVersionsHolding(t, conn, schema, "subscribers", email), rowVersionsHolding(t, conn, schema, "consents", ip))

	// A transaction elsewhere on the server (another package's tests) may
	// keep the dead versions visible for a moment: Scrub again until the
	// horizon passes, as the retention loop does each hour.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := db.Scrub(ctx); err != nil {
			t.Fatalf("Scrub: %v", err)
		}
		subs, cons := rowVersionsHolding(t, conn, schema, "subscribers", email), rowVersionsHolding(t, conn, schema, "consents", ip)
		if subs == 0 && cons == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Scrub: %d versions of the erased row in subscribers, %d in consents; want none", subs, cons)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := rowVersionsHolding(t, conn, schema, "subscribers", "stays@example.org"); n != 1 {
		t.Fatalf("the neighbour has %d row versions, want 1", n)
	}
}
