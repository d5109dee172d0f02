package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald"
	"herald/apitokens"
	"herald/articles"
	"herald/delivery"
	"herald/store/postgres"
	"herald/store/postgres/pgtest"
	"herald/store/storetest"
	"herald/subscribers"
)

// admin connects to the test database for schema work (pgtest.Admin).
func admin(t testing.TB) *pgx.Conn { t.Helper(); return pgtest.Admin(t) }

// newSchema creates an empty schema dropped when the test ends.
func newSchema(t testing.TB) string { t.Helper(); return pgtest.NewSchema(t) }

// schemaDSN returns the test DSN with search_path set to schema.
func schemaDSN(t testing.TB, schema string) string { t.Helper(); return pgtest.SchemaDSN(t, schema) }

// openIn opens (without migrating) a store on schema, closed when the test
// ends (before the schema is dropped).
func openIn(t testing.TB, schema string) *postgres.DB {
	t.Helper()
	return openDSN(t, schemaDSN(t, schema))
}

// openDSN opens (without migrating) a store on dsn, closed when the test
// ends.
func openDSN(t testing.TB, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), dsn, postgres.WithMaxConns(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

// open returns a migrated, empty store in a schema of its own.
func open(t testing.TB) *postgres.DB {
	t.Helper()
	db := openIn(t, newSchema(t))
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

// requireServer skips (or, under CI, fails) a whole suite at once when the
// server is down, rather than once per subtest.
func requireServer(t *testing.T) {
	t.Helper()
	pgtest.Require(t)
}

func TestContract(t *testing.T) {
	requireServer(t)
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t) })
}

func TestArticlesContract(t *testing.T) {
	requireServer(t)
	storetest.RunArticles(t, func(t *testing.T) articles.Store { return open(t) })
}

func TestDigestContract(t *testing.T) {
	requireServer(t)
	storetest.RunDigest(t, func(t *testing.T) storetest.DigestStore { return open(t) })
}

func TestAdminContract(t *testing.T) {
	requireServer(t)
	storetest.RunAdmin(t, func(t *testing.T) storetest.AdminStore { return open(t) })
}

func TestPrivacyContract(t *testing.T) {
	requireServer(t)
	storetest.RunPrivacy(t, func(t *testing.T) storetest.PrivacyStore { return open(t) })
}

func TestFeedbackContract(t *testing.T) {
	requireServer(t)
	storetest.RunFeedback(t, func(t *testing.T) storetest.FeedbackStore[postgres.FeedbackLogEntry] { return open(t) },
		func(e postgres.FeedbackLogEntry) subscribers.FeedbackLog { return e.FeedbackLog })
}

func TestOpenRejectsBadDSN(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://herald:s3cret@[::1")
	if err == nil {
		t.Fatal("Open with a malformed DSN succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	requireServer(t) // the server is up; only the port below is wrong
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if got := herald.ErrorCode(err); got != herald.EUNAVAILABLE {
		t.Fatalf("Open on a closed port = %v (code %q), want EUNAVAILABLE", err, got)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	db := openIn(t, schema)
	n, err := db.MigrationsPending(ctx)
	if want := postgres.MigrationCount(); err != nil || n != want || want < 3 {
		t.Fatalf("MigrationsPending on an empty schema = %d, %v; want %d (>= 3)", n, err, want)
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

	db = openIn(t, schema)
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
	// A NOT NULL time left zero reads back as the zero time.
	if !subs[0].CreatedAt.IsZero() || !subs[0].ConfirmedAt.IsZero() {
		t.Fatalf("zero times read back as %v, %v", subs[0].CreatedAt, subs[0].ConfirmedAt)
	}
}

func TestMigrateRefusesEditedOrUnknown(t *testing.T) {
	requireServer(t)
	tests := []struct {
		name, sql, want string
	}{
		{"edited", `UPDATE schema_migrations SET checksum = 'x' WHERE version = 1`, "edited"},
		{"unknown", `INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 'x', now())`, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			if err := db.Exec(t.Context(), tt.sql); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(t.Context()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Migrate = %v, want an error about %q", err, tt.want)
			}
			if _, err := db.MigrationsPending(t.Context()); err == nil {
				t.Fatal("MigrationsPending succeeded")
			}
		})
	}
}

// TestMigrateConcurrent starts several instances on one empty schema at
// once, as a rolling deploy does: the advisory lock lets one apply each
// migration while the others wait and then find it applied.
func TestMigrateConcurrent(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	const instances = 4
	dbs := make([]*postgres.DB, instances)
	for i := range dbs {
		dbs[i] = openIn(t, schema)
	}
	var wg sync.WaitGroup
	errs := make([]error, instances)
	start := make(chan struct{})
	for i, db := range dbs {
		wg.Go(func() {
			<-start
			errs[i] = db.Migrate(ctx)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Migrate: %v", err)
	}
	n, err := dbs[0].QueryInt(ctx, `SELECT count(*) FROM schema_migrations`)
	if want := postgres.MigrationCount(); err != nil || n != int64(want) {
		t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, want)
	}
	for i, db := range dbs {
		if n, err := db.MigrationsPending(ctx); err != nil || n != 0 {
			t.Fatalf("instance %d: MigrationsPending = %d, %v; want 0", i, n, err)
		}
	}
}

// TestClaimTwoEngines claims from one queue through two pools at once, as
// two Herald instances do: SKIP LOCKED hands each message to one of them.
func TestClaimTwoEngines(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	a := openIn(t, schema)
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := openIn(t, schema)
	const total, batch, workersPerEngine = 1200, 25, 3
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	err := a.Update(ctx, func(tx subscribers.Tx) error {
		for i := range 12 {
			s := &subscribers.Subscriber{Email: fmt.Sprintf("r%d@example.org", i), Status: subscribers.StatusActive,
				CreatedAt: now, UpdatedAt: now}
			if err := tx.CreateSubscriber(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// total/12 messages for each of the 12 readers, priorities mixed.
	if err := a.Exec(ctx, `INSERT INTO messages (kind, subscriber_id, message_id, priority, next_attempt_at, created_at, updated_at)
        SELECT 'digest', s.id, 'm' || g || '.' || s.id || '@test', g % 3, $1, $1, $1
        FROM subscribers s, generate_series(1, $2) g`, now, total/12); err != nil {
		t.Fatal(err)
	}

	var (
		mu   sync.Mutex
		seen = map[int64]string{}
		wg   sync.WaitGroup
	)
	for e, db := range []*postgres.DB{a, b} {
		for w := range workersPerEngine {
			owner := fmt.Sprintf("engine%d-worker%d", e, w)
			wg.Go(func() {
				for {
					jobs, err := db.ClaimMessages(ctx, owner, now, time.Minute, batch)
					if err != nil {
						t.Error(err)
						return
					}
					if len(jobs) == 0 {
						return
					}
					results := make([]delivery.Result, len(jobs))
					mu.Lock()
					for i, j := range jobs {
						if prev, ok := seen[j.ID]; ok {
							t.Errorf("message %d claimed by %s and %s", j.ID, prev, owner)
						}
						seen[j.ID] = owner
						results[i] = delivery.Result{ID: j.ID, Outcome: delivery.OutcomeSent, At: now}
					}
					mu.Unlock()
					if err := db.SettleMessages(ctx, owner, results); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if len(seen) != total {
		t.Fatalf("claimed %d distinct messages, want %d", len(seen), total)
	}
	counts, err := b.CountMessages(ctx)
	if err != nil || counts["sent"] != total || len(counts) != 1 {
		t.Fatalf("counts %v, %v; want %d sent", counts, err, total)
	}
}

func TestTryLeader(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	first, second := openIn(t, schema), openIn(t, schema)
	// Advisory locks are per database, not per schema: a unique name keeps
	// parallel runs apart.
	name := "scheduler-" + schema

	release, ok, err := first.TryLeader(ctx, name)
	if err != nil || !ok {
		t.Fatalf("first TryLeader = %v, %v; want the lock", ok, err)
	}
	if _, ok, err := second.TryLeader(ctx, name); err != nil || ok {
		t.Fatalf("second TryLeader while held = %v, %v; want false", ok, err)
	}
	// The same instance asking again does not get a second grant either.
	if _, ok, err := first.TryLeader(ctx, name); err != nil || ok {
		t.Fatalf("first TryLeader again = %v, %v; want false", ok, err)
	}
	// Another name is another lock.
	if rel, ok, err := second.TryLeader(ctx, name+"-other"); err != nil || !ok {
		t.Fatalf("TryLeader on another name = %v, %v; want the lock", ok, err)
	} else {
		rel()
	}

	release()
	release() // twice is harmless
	rel2, ok, err := second.TryLeader(ctx, name)
	if err != nil || !ok {
		t.Fatalf("TryLeader after release = %v, %v; want the lock", ok, err)
	}
	rel2()

	// Failover: the holder goes away without releasing.
	if _, ok, err := first.TryLeader(ctx, name); err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v; want the lock", ok, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rel, ok, err := second.TryLeader(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			rel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock was not released when its holder closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := first.TryLeader(ctx, name); herald.ErrorCode(err) != herald.EUNAVAILABLE {
		t.Fatalf("TryLeader after Close = %v, want EUNAVAILABLE", err)
	}
}

// TestTryLeaderConnectionDies kills the holder's session from outside, as a
// crash or a network partition does: the lock passes on.
func TestTryLeaderConnectionDies(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	first, second := openIn(t, schema), openIn(t, schema)
	name := "scheduler-" + schema
	release, ok, err := first.TryLeader(ctx, name)
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v; want the lock", ok, err)
	}
	defer release()
	conn := admin(t)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((classid::bigint << 32) | objid::bigint) = $1`, first.LeaderKey(name)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rel, ok, err := second.TryLeader(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			rel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock was not released when its session died")
		}
		time.Sleep(50 * time.Millisecond)
	}
	release() // on a dead connection: must not panic or hang
}

// TestTxUsableAfterConflict: a skipped insert reports ECONFLICT without
// aborting the PostgreSQL transaction, so a caller can look the row up
// instead (a signup racing another for the same address).
func TestTxUsableAfterConflict(t *testing.T) {
	ctx := t.Context()
	db := open(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first := &subscribers.Subscriber{Email: "race@example.org", Status: subscribers.StatusPending, CreatedAt: now, UpdatedAt: now}
	if err := db.Update(ctx, func(tx subscribers.Tx) error { return tx.CreateSubscriber(first) }); err != nil {
		t.Fatal(err)
	}
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		err := tx.CreateSubscriber(&subscribers.Subscriber{Email: "RACE@example.org", Status: subscribers.StatusPending, CreatedAt: now, UpdatedAt: now})
		if !herald.IsCode(err, herald.ECONFLICT) {
			return fmt.Errorf("CreateSubscriber = %w, want ECONFLICT", err)
		}
		got, err := tx.SubscriberByEmail("race@example.org")
		if err != nil {
			return err
		}
		if err := tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: got.ID, MessageID: "w@x", CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: got.ID, MessageID: "w@x", CreatedAt: now}); !herald.IsCode(err, herald.ECONFLICT) {
			return fmt.Errorf("second Enqueue = %w, want ECONFLICT", err)
		}
		return tx.AddEvent(subscribers.Event{SubscriberID: got.ID, At: now, Kind: subscribers.EventSignup})
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := db.SubscriberEvents(ctx, first.ID); err != nil || len(ev) != 1 {
		t.Fatalf("events %v, %v; want one", ev, err)
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
	// A reference to a missing subscriber is ENOTFOUND.
	err = db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.Enqueue(subscribers.OutboxMessage{Kind: "welcome", SubscriberID: id + 100, MessageID: "orphan@x"})
	})
	if got := herald.ErrorCode(err); got != herald.ENOTFOUND {
		t.Fatalf("Enqueue for a missing subscriber = %v (code %q), want ENOTFOUND", err, got)
	}
	// Deleting a subscriber takes their rows with them.
	if err := db.Exec(ctx, `DELETE FROM subscribers WHERE id = $1`, id); err != nil {
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
// the others; every arm locks its rows (SKIP LOCKED).
func TestClaimUsesIndexes(t *testing.T) {
	db := open(t)
	plan, err := db.ExplainClaim(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, idx := range []string{"messages_queued", "messages_leased"} {
		if n := strings.Count(plan, "Index Scan using "+idx+" "); n < 2 {
			t.Errorf("claim plan uses %s %d times, want 2 (one per arm):\n%s", idx, n, plan)
		}
	}
	if !strings.Contains(plan, "Index Cond: ((priority > ") {
		t.Errorf("the others' arm does not seek past the urgent priority:\n%s", plan)
	}
	if n := strings.Count(plan, "LockRows"); n < 4 {
		t.Errorf("claim plan locks rows in %d places, want 4 (one per arm):\n%s", n, plan)
	}
	if strings.Contains(plan, "Seq Scan on messages") {
		t.Errorf("claim plan scans the table:\n%s", plan)
	}
}

// BenchmarkClaimSettle claims 500-row batches from a queue of 50,000 messages
// and settles them as sent; msg/s is the figure to watch. It mirrors the
// SQLite benchmark, but fills the queue in one INSERT ... SELECT.
func BenchmarkClaimSettle(b *testing.B) {
	const batch, queue = 500, 50_000
	ctx := context.Background()
	db := open(b)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fill := func() {
		b.Helper()
		err := db.Exec(ctx, `WITH s AS (
                INSERT INTO subscribers (email, name, status, created_at, updated_at)
                SELECT 'r' || $1 || '-' || g || '@example.org', 'Reader', 'active', $2, $2
                FROM generate_series(1, $3) g
                RETURNING id)
            INSERT INTO messages (kind, subscriber_id, message_id, priority, next_attempt_at, created_at, updated_at)
            SELECT 'digest', id, $1 || '.' || id || '@bench', 10, $2, $2, $2 FROM s`,
			fmt.Sprint(now.UnixNano()), now, queue)
		if err == nil {
			err = db.Exec(ctx, `ANALYZE messages`)
		}
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
		if err := db.SettleMessages(ctx, "bench", results); err != nil {
			b.Fatal(err)
		}
		sent += len(jobs)
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "msg/s")
}

// TestLeadership: the lock is kept from one round to the next, another
// instance cannot take it meanwhile, and it passes on when the holder
// resigns or its session dies.
func TestLeadership(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	first, second := openIn(t, schema), openIn(t, schema)
	name := "scheduler"
	a, b := first.Leadership(name), second.Leadership(name)
	lead := func(l *postgres.Leadership) bool {
		t.Helper()
		release, ok, err := l.Lead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			release() // a no-op: the lock stays
		}
		return ok
	}
	for round := range 3 {
		if !lead(a) {
			t.Fatalf("round %d: the holder lost the lock", round)
		}
		if lead(b) {
			t.Fatalf("round %d: a second instance got the lock", round)
		}
	}
	a.Resign()
	if !lead(b) || lead(a) {
		t.Fatal("the lock did not pass on when its holder resigned")
	}

	// The holder's session dies: the next Lead of the other instance takes
	// over, and the old holder, finding its connection dead, does not
	// claim to lead.
	conn := admin(t)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((classid::bigint << 32) | objid::bigint) = $1`, second.LeaderKey(name)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !lead(a) {
		if time.Now().After(deadline) {
			t.Fatal("the lock did not pass on when its holder's session died")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lead(b) {
		t.Fatal("the instance whose session died still leads")
	}
}

// TestLeaderPerSchema: two sites in two schemas of one database each elect
// their own leader.
func TestLeaderPerSchema(t *testing.T) {
	ctx := t.Context()
	one, two := openIn(t, newSchema(t)), openIn(t, newSchema(t))
	for _, db := range []*postgres.DB{one, two} {
		release, ok, err := db.TryLeader(ctx, "scheduler")
		if err != nil || !ok {
			t.Fatalf("TryLeader = %v, %v; want the lock of its own schema", ok, err)
		}
		defer release()
	}
}

func TestAPITokensContract(t *testing.T) {
	requireServer(t)
	storetest.RunAPITokens(t, func(t *testing.T) apitokens.Store { return open(t) })
}
