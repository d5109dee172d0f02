package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"herald/delivery"
	"herald/store/sqlite"
	"herald/store/storetest"
	"herald/subscribers"
)

// open opens and migrates a new database file under t.TempDir().
func open(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t) })
}

func TestAdminContract(t *testing.T) {
	storetest.RunAdmin(t, func(t *testing.T) storetest.AdminStore { return open(t) })
}

func TestFeedbackContract(t *testing.T) {
	storetest.RunFeedback(t, func(t *testing.T) storetest.FeedbackStore[sqlite.FeedbackLogEntry] { return open(t) },
		func(e sqlite.FeedbackLogEntry) subscribers.FeedbackLog { return e.FeedbackLog })
}

func TestOpenCreatesMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "herald.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
}

func TestOpenRejectsMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db?mode=memory", "x.db?_fk=off"} {
		if db, err := sqlite.Open(t.Context(), p); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error", p)
		}
	}
}

func TestMigrateIdempotent(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "herald.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.MigrationsPending(ctx)
	if err != nil || n < 1 {
		t.Fatalf("MigrationsPending on a new file = %d, %v; want >= 1", n, err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if n, err := db.MigrationsPending(ctx); err != nil || n != 0 {
		t.Fatalf("MigrationsPending after Migrate = %d, %v; want 0", n, err)
	}
	if err := db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.CreateSubscriber(&subscribers.Subscriber{Email: "keep@example.org", Status: subscribers.StatusActive})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.MigrationsPending(ctx); err != nil || n != 0 {
		t.Fatalf("MigrationsPending after reopen = %d, %v; want 0", n, err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after reopen: %v", err)
	}
	subs, err := db.FindSubscribers(ctx, subscribers.Filter{})
	if err != nil || len(subs) != 1 {
		t.Fatalf("subscribers after reopen: %v, %v", subs, err)
	}
}

// rawExec runs SQL on the file through a separate connection, as an operator
// (or a bug) would.
func rawExec(t *testing.T, db *sqlite.DB, query string, args ...any) {
	t.Helper()
	raw, err := sqlite.OpenRaw(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestMigrateRefusesEditedOrUnknown(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"edited", `UPDATE schema_migrations SET checksum = 'x' WHERE version = 1`, "edited"},
		{"unknown", `INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 'x', 0)`, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := open(t)
			rawExec(t, db, tt.sql)
			if err := db.Migrate(t.Context()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Migrate = %v, want an error about %q", err, tt.want)
			}
			if _, err := db.MigrationsPending(t.Context()); err == nil {
				t.Fatal("MigrationsPending succeeded")
			}
		})
	}
}

func TestPragmas(t *testing.T) {
	db := open(t)
	got, err := db.Pragmas(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"writer journal_mode": "wal", "writer foreign_keys": "1", "writer synchronous": "1",
		"writer busy_timeout": "5000", "reader query_only": "1", "reader foreign_keys": "1",
		"reader busy_timeout": "5000",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestForeignKeysCascade(t *testing.T) {
	ctx := t.Context()
	db := open(t)
	var id int64
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		s := &subscribers.Subscriber{Email: "gone@example.org", Status: subscribers.StatusActive, Newsletters: []string{"daily"}}
		if err := tx.CreateSubscriber(s); err != nil {
			return err
		}
		id = s.ID
		if err := tx.AddEvent(subscribers.Event{SubscriberID: id, Kind: "x"}); err != nil {
			return err
		}
		return tx.Enqueue(subscribers.OutboxMessage{Kind: "welcome", SubscriberID: id, MessageID: "m@x"})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Foreign keys are enforced.
	err = db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.Enqueue(subscribers.OutboxMessage{Kind: "welcome", SubscriberID: id + 100, MessageID: "orphan@x"})
	})
	if err == nil {
		t.Fatal("Enqueue for a missing subscriber succeeded")
	}
	// Deleting a subscriber takes their rows with them.
	if err := db.DeleteSubscriber(ctx, id); err != nil {
		t.Fatal(err)
	}
	if c, err := db.CountMessages(ctx); err != nil || len(c) != 0 {
		t.Fatalf("messages after delete: %v, %v", c, err)
	}
	if ev, err := db.SubscriberEvents(ctx, id); err != nil || len(ev) != 0 {
		t.Fatalf("events after delete: %v, %v", ev, err)
	}
}

// The claim walks the partial indexes, each twice: once from the start for
// the most urgent due priority, and once from just past it for the share of
// the others. So it does on an empty outbox and once statistics describe a
// full one (Herald analyses after bulk writes).
func TestClaimUsesIndexes(t *testing.T) {
	ctx := t.Context()
	db := open(t)
	check := func(when string) {
		t.Helper()
		plan, err := db.ExplainClaim(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, idx := range []string{"messages_queued", "messages_leased"} {
			if n := strings.Count(plan, " INDEX "+idx); n < 2 {
				t.Errorf("%s: claim plan uses %s %d times, want 2 (one per arm):\n%s", when, idx, n, plan)
			}
		}
		if !strings.Contains(plan, "messages_queued (priority>?)") {
			t.Errorf("%s: the others' arm does not seek past the urgent priority:\n%s", when, plan)
		}
		if strings.Contains(plan, "SCAN messages\n") {
			t.Errorf("%s: claim plan scans the table:\n%s", when, plan)
		}
	}
	check("empty")

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		s := &subscribers.Subscriber{Email: "plan@example.org", Status: subscribers.StatusActive, CreatedAt: now, UpdatedAt: now}
		if err := tx.CreateSubscriber(s); err != nil {
			return err
		}
		for i := range 2000 {
			if err := tx.Enqueue(subscribers.OutboxMessage{Kind: "digest", SubscriberID: s.ID,
				MessageID: fmt.Sprintf("plan%d@test", i), Priority: 10 * (i % 2), CreatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimMessages(ctx, "w", now, time.Minute, 100); err != nil {
		t.Fatal(err)
	}
	if err := db.Analyze(ctx); err != nil {
		t.Fatal(err)
	}
	check("analysed")
}

// The statement settling sent messages looks each one up by primary key,
// also once statistics say that no message is leased (with them, the
// planner preferred walking messages_leased and scanning the id list for
// every leased row). On a tiny outbox the planner may scan the table
// instead, which costs as little; this one holds 2,000 messages.
func TestSettleSentUsesPrimaryKey(t *testing.T) {
	ctx := t.Context()
	db := open(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		for i := range 2000 {
			s := &subscribers.Subscriber{Email: fmt.Sprintf("plan%d@example.org", i), Status: subscribers.StatusActive,
				CreatedAt: now, UpdatedAt: now}
			if err := tx.CreateSubscriber(s); err != nil {
				return err
			}
			if err := tx.Enqueue(subscribers.OutboxMessage{Kind: "digest", SubscriberID: s.ID,
				MessageID: fmt.Sprintf("plan%d@test", i), CreatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := db.ExplainSettleSent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "SEARCH messages USING INTEGER PRIMARY KEY") || strings.Contains(plan, "SCAN messages") {
		t.Errorf("settle plan does not look messages up by primary key:\n%s", plan)
	}
}

// Sent results that follow one another settle together and share the
// latest sent time of their run, as long as the run's times span at most
// 10 ms; other outcomes in between, and rows another worker holds, keep
// their own treatment.
func TestSettleSentRuns(t *testing.T) {
	ctx := t.Context()
	db := open(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		s := &subscribers.Subscriber{Email: "runs@example.org", Status: subscribers.StatusActive, CreatedAt: now, UpdatedAt: now}
		if err := tx.CreateSubscriber(s); err != nil {
			return err
		}
		for i := range 9 {
			if err := tx.Enqueue(subscribers.OutboxMessage{Kind: "digest", SubscriberID: s.ID,
				MessageID: fmt.Sprintf("run%d@test", i), CreatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := db.ClaimMessages(ctx, "w", now, time.Minute, 10)
	if err != nil || len(jobs) != 9 {
		t.Fatalf("claimed %d (%v), want 9", len(jobs), err)
	}
	// The last one is leased to someone else by now.
	rawExec(t, db, `UPDATE messages SET lease_owner = 'other' WHERE id = ?`, jobs[5].ID)
	ms := time.Millisecond
	results := []delivery.Result{
		{ID: jobs[0].ID, Outcome: delivery.OutcomeSent, At: now.Add(1 * ms)},
		{ID: jobs[1].ID, Outcome: delivery.OutcomeSent, At: now.Add(4 * ms)},
		{ID: jobs[2].ID, Outcome: delivery.OutcomeRetry, At: now.Add(5 * ms), NextAttemptAt: now.Add(time.Minute), Error: "451 later"},
		{ID: jobs[3].ID, Outcome: delivery.OutcomeSent, At: now.Add(6 * ms)},
		{ID: jobs[4].ID, Outcome: delivery.OutcomeSent, At: now.Add(30 * ms)},
		{ID: jobs[5].ID, Outcome: delivery.OutcomeSent, At: now.Add(31 * ms)},
		// Out of order: 60 and 53 share 60; 65 would stretch the run to
		// 12 ms (53 to 65), and starts its own.
		{ID: jobs[6].ID, Outcome: delivery.OutcomeSent, At: now.Add(60 * ms)},
		{ID: jobs[7].ID, Outcome: delivery.OutcomeSent, At: now.Add(53 * ms)},
		{ID: jobs[8].ID, Outcome: delivery.OutcomeSent, At: now.Add(65 * ms)},
	}
	if err := db.SettleMessages(ctx, "w", results); err != nil {
		t.Fatal(err)
	}
	raw, err := sqlite.OpenRaw(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	want := []struct {
		status string
		sentMS int64 // after now; -1: none
	}{{"sent", 4}, {"sent", 4}, {"queued", -1}, {"sent", 6}, {"sent", 31}, {"sending", -1}, {"sent", 60}, {"sent", 60}, {"sent", 65}}
	for i, w := range want {
		var status string
		var sent *int64
		if err := raw.QueryRowContext(ctx, `SELECT status, sent_at FROM messages WHERE id = ?`, jobs[i].ID).Scan(&status, &sent); err != nil {
			t.Fatal(err)
		}
		got := int64(-1)
		if sent != nil {
			got = *sent - now.UnixMilli()
		}
		if status != w.status || got != w.sentMS {
			t.Errorf("message %d: %s sent at +%d ms, want %s at +%d ms", i, status, got, w.status, w.sentMS)
		}
	}
}

// BenchmarkClaimSettle claims 500-row batches from a queue of 50,000 messages
// and settles them as sent, all at once (500) or in groups of 16, as the
// engine's group commits settle while workers wait for them; msg/s is the
// figure to watch.
func BenchmarkClaimSettle(b *testing.B) {
	for _, group := range []int{500, 16} {
		b.Run(fmt.Sprintf("settle=%d", group), func(b *testing.B) { benchClaimSettle(b, group) })
	}
}

func benchClaimSettle(b *testing.B, group int) {
	const batch, queue = 500, 50_000
	ctx := context.Background()
	db := open(b)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fill := func() {
		b.Helper()
		err := db.Update(ctx, func(tx subscribers.Tx) error {
			for i := range queue {
				s := &subscribers.Subscriber{Email: fmt.Sprintf("r%d-%d@example.org", now.UnixNano(), i), Name: "Reader",
					Status: subscribers.StatusActive, CreatedAt: now, UpdatedAt: now}
				if err := tx.CreateSubscriber(s); err != nil {
					return err
				}
				if err := tx.Enqueue(subscribers.OutboxMessage{Kind: "digest", SubscriberID: s.ID,
					MessageID: fmt.Sprintf("%d.%d@bench", now.UnixNano(), i), Priority: 10, CreatedAt: now}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	fill()
	results := make([]delivery.Result, 0, batch)
	sent := 0
	b.ResetTimer()
	for b.Loop() {
		jobs, err := db.ClaimMessages(ctx, "bench", now, time.Minute, batch)
		if err != nil {
			b.Fatal(err)
		}
		if len(jobs) == 0 {
			b.StopTimer()
			now = now.Add(time.Second)
			fill()
			b.StartTimer()
			continue
		}
		results = results[:0]
		for _, j := range jobs {
			results = append(results, delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: delivery.OutcomeSent, At: now})
		}
		for rs := range slices.Chunk(results, group) {
			if err := db.SettleMessages(ctx, "bench", rs); err != nil {
				b.Fatal(err)
			}
		}
		sent += len(jobs)
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "msg/s")
}
