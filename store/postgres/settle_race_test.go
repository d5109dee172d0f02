package postgres_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/delivery"
	"herald/digest"
	"herald/store/postgres"
	"herald/store/storetest"
	"herald/subscribers"
)

// TestSettleRacesResend plays, on two instances sharing one database, the
// two interleavings in which a settle of an issue (SettleIssue or
// SettleIssues) and a resend of its failed messages (RequeueFailed) could
// leave the issue sent while messages of it are queued again. A third
// connection holds a row lock to stop one of them at the point that
// matters, and pg_stat_activity shows when it waits, so the order is
// forced, not hoped for:
//
//   - settle first: the settle's statement starts (its snapshot sees
//     nothing left to send) and waits on the issue row; the resend then runs
//     and queues the failed messages again; the settle goes on.
//   - resend first: the resend's statement starts (its snapshot sees the
//     issue sending, so it has nothing to set back) and waits on a failed
//     message; the settle then runs and marks the issue sent; the resend
//     goes on.
//
// Whatever order the store lets them finish in, the messages must be queued
// again and the issue sending, then sent once they settle.
func TestSettleRacesResend(t *testing.T) {
	requireServer(t)
	settles := []struct {
		name   string
		settle func(ctx context.Context, db *postgres.DB, id int64, now time.Time) error
	}{
		{"SettleIssue", func(ctx context.Context, db *postgres.DB, id int64, now time.Time) error {
			_, err := db.SettleIssue(ctx, id, now)
			return err
		}},
		{"SettleIssues", func(ctx context.Context, db *postgres.DB, _ int64, now time.Time) error {
			return db.SettleIssues(ctx, now)
		}},
	}
	orders := []struct {
		name string
		// lock is what the blocker holds: the row the first one waits on.
		lock        string
		settleFirst bool
	}{
		{"SettleFirst", `SELECT id FROM issues WHERE id = $1 FOR UPDATE`, true},
		{"ResendFirst", `SELECT id FROM messages WHERE issue_id = $1 AND status = 'failed' ORDER BY id LIMIT 1 FOR UPDATE`, false},
	}
	for _, o := range orders {
		for _, st := range settles {
			t.Run(o.name+"/"+st.name, func(t *testing.T) {
				t.Parallel()
				testSettleRacesResend(t, o.lock, o.settleFirst, st.settle)
			})
		}
	}
}

func testSettleRacesResend(t *testing.T, lock string, settleFirst bool,
	settle func(ctx context.Context, db *postgres.DB, id int64, now time.Time) error) {
	ctx := t.Context()
	schema := newSchema(t)
	// Two instances: one settles, the other resends; each has its own
	// application_name so that the watcher can tell which one waits.
	settlerApp, resenderApp := schema+"_settler", schema+"_resender"
	settler := openNamed(t, schema, settlerApp)
	if err := settler.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	resender := openNamed(t, schema, resenderApp)

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	issueID := raceScene(t, settler, now)

	watch := admin(t)
	defer watch.Close(context.Background())
	blocker, err := pgx.Connect(ctx, schemaDSN(t, schema))
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(context.Background())
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	var locked int64
	if err := tx.QueryRow(ctx, lock, issueID).Scan(&locked); err != nil {
		t.Fatalf("blocker: %v", err)
	}

	settleAt := now.Add(2 * time.Minute)
	settled := make(chan error, 1)
	startSettle := func() {
		go func() { settled <- settle(ctx, settler, issueID, settleAt) }()
	}
	var requeued int
	resent := make(chan error, 1)
	startResend := func() {
		go func() {
			n, err := resender.RequeueFailed(ctx, issueID, now.Add(3*time.Minute))
			requeued = n
			resent <- err
		}()
	}

	// The first one stops on the blocker's row, its statement begun; the
	// second one runs as far as the store lets it (to its end, or to a
	// lock wait) before the blocker lets go.
	first, firstApp, firstDone, second, secondApp, secondDone := startSettle, settlerApp, settled, startResend, resenderApp, resent
	if !settleFirst {
		first, firstApp, firstDone, second, secondApp, secondDone = startResend, resenderApp, resent, startSettle, settlerApp, settled
	}
	first()
	if waitLockOrDone(t, watch, firstApp, firstDone) {
		t.Fatalf("%s finished without waiting on the blocker's lock", firstApp)
	}
	second()
	secondFinished := waitLockOrDone(t, watch, secondApp, secondDone)
	t.Logf("%s finished before the blocker let go: %v", secondApp, secondFinished)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []chan error{settled, resent} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("settle or resend still running 30s after the blocker let go")
		}
	}

	if requeued != 2 {
		t.Fatalf("RequeueFailed queued %d, want the 2 failed messages", requeued)
	}
	iss, err := settler.FindIssue(ctx, issueID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := settler.IssueProgress(ctx, issueID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Queued != 2 || iss.Status != digest.IssueSending || !iss.CompletedAt.IsZero() {
		t.Fatalf("after the race: issue %q (completed %v) with %d queued; want sending, not completed, 2 queued",
			iss.Status, iss.CompletedAt, p.Queued)
	}

	// The resent messages go out; only then is the issue sent.
	later := now.Add(time.Hour)
	storetest.Deliver(t, settler, later, nil)
	if err := settler.SettleIssues(ctx, later); err != nil {
		t.Fatal(err)
	}
	if iss, err = settler.FindIssue(ctx, issueID); err != nil {
		t.Fatal(err)
	}
	if iss.Status != digest.IssueSent || !iss.CompletedAt.Equal(later) {
		t.Fatalf("after the resent messages settled: issue %q at %v, want sent at %v", iss.Status, iss.CompletedAt, later)
	}
}

// openNamed opens a store on schema whose connections carry
// application_name app.
func openNamed(t *testing.T, schema, app string) *postgres.DB {
	t.Helper()
	dsn := schemaDSN(t, schema)
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		dsn = u.String()
	} else {
		dsn += " application_name=" + app
	}
	return openDSN(t, dsn)
}

// raceScene makes an issue in status sending whose three messages have all
// settled, two of them failed: what a settle marks sent and a resend
// queues again. It returns the issue's id.
func raceScene(t *testing.T, db *postgres.DB, now time.Time) int64 {
	t.Helper()
	ctx := t.Context()
	var subs []int64
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		for _, name := range []string{"sent", "failed1", "failed2"} {
			s := &subscribers.Subscriber{Email: name + "@readers.example", Status: subscribers.StatusActive,
				Newsletters: []string{"daily"}, CreatedAt: now, UpdatedAt: now}
			if err := tx.CreateSubscriber(s); err != nil {
				return err
			}
			subs = append(subs, s.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	iss := &digest.Issue{NewsletterID: "daily", Slot: now, Subject: "Daily", CreatedAt: now}
	if err := db.CreateIssue(ctx, iss); err != nil {
		t.Fatal(err)
	}
	batch := make([]digest.IssueMessage, len(subs))
	for i, id := range subs {
		batch[i] = digest.IssueMessage{SubscriberID: id, ArticleIDs: []int64{1}, MessageID: digest.MessageID(iss.ID, id, "test.example")}
	}
	if err := db.EnqueueIssue(ctx, iss.ID, batch, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishBuilding(ctx, iss.ID, now); err != nil {
		t.Fatal(err)
	}
	storetest.Deliver(t, db, now.Add(time.Minute), map[int64]delivery.Outcome{
		subs[1]: delivery.OutcomeFailed, subs[2]: delivery.OutcomeFailed,
	})
	got, err := db.FindIssue(ctx, iss.ID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := db.IssueProgress(ctx, iss.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != digest.IssueSending || p != (digest.Progress{Total: 3, Sent: 1, Failed: 2}) {
		t.Fatalf("scene: issue %q, progress %+v; want sending, 1 sent and 2 failed", got.Status, p)
	}
	return iss.ID
}

// waitLockOrDone waits until the connection named app waits on a lock
// (false) or done says its call finished (true; the error is put back for
// the caller). It fails the test after 10 seconds of neither.
func waitLockOrDone(t *testing.T, watch *pgx.Conn, app string, done chan error) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			return true
		default:
		}
		var waiting bool
		err := watch.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
            WHERE application_name = $1 AND state = 'active' AND wait_event_type = 'Lock')`, app).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s neither finished nor waited on a lock within 10s", app)
	return false
}
