package storetest

import (
	"slices"
	"testing"
	"time"

	"herald"
	"herald/articles"
	"herald/delivery"
	"herald/digest"
	"herald/subscribers"
)

// AdminStore is what the admin contract suite needs from an engine: the
// admin API's optional capabilities (subscribers.AdminStore,
// articles.Deleter, digest.FailedResender) and the stores that set the
// scene.
type AdminStore interface {
	Store
	digest.Store
	articles.Store
	subscribers.AdminStore
	articles.Deleter
	digest.FailedResender
}

// RunAdmin runs the contract suite of the admin API's store capabilities.
// open must return a new, migrated, empty store for each call, and arrange
// its own cleanup.
func RunAdmin(t *testing.T, open func(t *testing.T) AdminStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s AdminStore)
	}{
		{"DeleteArticle", testDeleteArticle},
		{"RequeueFailed", testRequeueFailed},
		{"RequeueFailedWhileSending", testRequeueFailedWhileSending},
		{"CountSubscribers", testCountSubscribers},
		{"DailyActivity", testDailyActivity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// testDeleteArticle: an article goes with its tags, its URL is free
// again, the others stay; a second delete, or an unknown id, is ENOTFOUND.
func testDeleteArticle(t *testing.T, s AdminStore) {
	ctx := t.Context()
	gone, kept := newArticle("gone", at(0), "go", "only-gone"), newArticle("kept", at(time.Hour), "go")
	createArticles(t, s, gone, kept)

	if err := s.DeleteArticle(ctx, gone.ID); err != nil {
		t.Fatalf("DeleteArticle: %v", err)
	}
	if _, err := s.FindArticleByID(ctx, gone.ID); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("FindArticleByID after delete: %v, want ENOTFOUND", err)
	}
	if got := findArticles(t, s, articles.Filter{Tag: "only-gone"}); len(got) != 0 {
		t.Fatalf("articles tagged only-gone after delete = %v, want none (tags cascade)", got)
	}
	if got, want := findArticles(t, s, articles.Filter{Tag: "go"}), []int64{kept.ID}; !slices.Equal(got, want) {
		t.Fatalf("articles tagged go = %v, want %v", got, want)
	}
	got, err := s.FindArticleByID(ctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalArticle(t, got, kept)

	wantCode(t, s.DeleteArticle(ctx, gone.ID), herald.ENOTFOUND)
	wantCode(t, s.DeleteArticle(ctx, kept.ID+1000), herald.ENOTFOUND)

	again := newArticle("gone", at(2*time.Hour), "only-gone")
	createArticles(t, s, again)
	if got := findArticles(t, s, articles.Filter{Tag: "only-gone"}); !slices.Equal(got, []int64{again.ID}) {
		t.Fatalf("articles tagged only-gone = %v, want the new one %d", got, again.ID)
	}
}

// testRequeueFailed: a sent issue's failed messages are queued again, due
// at now with their attempts reset, bounced ones stay settled, and the
// issue is sending again until they settle.
func testRequeueFailed(t *testing.T, s AdminStore) {
	ctx := t.Context()
	subs := dgReaders(t, s, "daily", "sent", "failed1", "failed2", "bounced")
	iss := dgIssue(t, s, "daily", at(0))
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs, 1), at(0))
	dgFinish(t, s, iss.ID, at(0))
	Deliver(t, s, at(time.Minute), map[int64]delivery.Outcome{
		subs[1]: delivery.OutcomeFailed, subs[2]: delivery.OutcomeFailed, subs[3]: delivery.OutcomeBounced,
	})
	if err := s.SettleIssues(ctx, at(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := dgFind(t, s, iss.ID); got.Status != digest.IssueSent {
		t.Fatalf("issue before requeue is %q, want sent", got.Status)
	}

	n, err := s.RequeueFailed(ctx, iss.ID, at(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("RequeueFailed = %d, %v; want 2", n, err)
	}
	got := dgFind(t, s, iss.ID)
	if got.Status != digest.IssueSending || !got.CompletedAt.IsZero() {
		t.Fatalf("issue after requeue: status %q, completed %v; want sending, not completed", got.Status, got.CompletedAt)
	}
	if p, want := dgProgress(t, s, iss.ID), (digest.Progress{Total: 4, Queued: 2, Sent: 1, Bounced: 1}); p != want {
		t.Fatalf("progress after requeue = %+v, want %+v", p, want)
	}

	// Due at now, not before.
	if jobs, err := s.ClaimMessages(ctx, "w", at(time.Hour-time.Second), time.Minute, 100); err != nil || len(jobs) != 0 {
		t.Fatalf("claimed %d, %v before the requeued messages are due; want none", len(jobs), err)
	}
	jobs := Deliver(t, s, at(time.Hour), nil)
	var who []int64
	for _, j := range jobs {
		who = append(who, j.SubscriberID)
		if j.Attempts != 1 || j.IssueID != iss.ID {
			t.Errorf("requeued job %+v: want attempt 1 of issue %d", j, iss.ID)
		}
	}
	if slices.Sort(who); !slices.Equal(who, subs[1:3]) {
		t.Fatalf("requeued messages went to %v, want %v", who, subs[1:3])
	}
	if err := s.SettleIssues(ctx, at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got = dgFind(t, s, iss.ID)
	if got.Status != digest.IssueSent || !got.CompletedAt.Equal(at(2*time.Hour)) {
		t.Fatalf("issue after the requeued messages settled: %q at %v, want sent at %v", got.Status, got.CompletedAt, at(2*time.Hour))
	}

	// Nothing failed: nothing queued, the issue left as it is.
	if n, err := s.RequeueFailed(ctx, iss.ID, at(3*time.Hour)); err != nil || n != 0 {
		t.Fatalf("RequeueFailed with no failure = %d, %v; want 0", n, err)
	}
	if got := dgFind(t, s, iss.ID); got.Status != digest.IssueSent {
		t.Fatalf("issue with nothing requeued became %q", got.Status)
	}
	if n, err := s.RequeueFailed(ctx, iss.ID+1000, at(3*time.Hour)); err != nil || n != 0 {
		t.Fatalf("RequeueFailed of an unknown issue = %d, %v; want 0", n, err)
	}
}

// testRequeueFailedWhileSending: failed messages of an issue still sending
// are queued again, and the issue stays sending.
func testRequeueFailedWhileSending(t *testing.T, s AdminStore) {
	ctx := t.Context()
	subs := dgReaders(t, s, "daily", "failed", "retry")
	iss := dgIssue(t, s, "daily", at(0))
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs, 1), at(0))
	dgFinish(t, s, iss.ID, at(0))
	jobs, err := s.ClaimMessages(ctx, "w", at(time.Minute), time.Minute, 100)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("claimed %d, %v; want 2", len(jobs), err)
	}
	results := make([]delivery.Result, len(jobs))
	for i, j := range jobs {
		o := delivery.OutcomeFailed
		if j.SubscriberID == subs[1] {
			o = delivery.OutcomeRetry
		}
		results[i] = delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: o, At: at(time.Minute),
			NextAttemptAt: at(time.Hour), Error: string(o)}
	}
	if err := s.SettleMessages(ctx, "w", results); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RequeueFailed(ctx, iss.ID, at(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("RequeueFailed = %d, %v; want 1", n, err)
	}
	if got := dgFind(t, s, iss.ID); got.Status != digest.IssueSending {
		t.Fatalf("issue is %q, want sending", got.Status)
	}
	if p, want := dgProgress(t, s, iss.ID), (digest.Progress{Total: 2, Queued: 2}); p != want {
		t.Fatalf("progress = %+v, want %+v", p, want)
	}
}

// testCountSubscribers: counts by newsletter and status, ordered by
// newsletter then status; subscribers of no newsletter are not counted.
func testCountSubscribers(t *testing.T, s AdminStore) {
	ctx := t.Context()
	if got, err := s.CountSubscribers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("CountSubscribers on an empty store = %v, %v; want none", got, err)
	}
	create(t, s,
		newSubscriber("a@example.org", subscribers.StatusActive, "daily", "weekly"),
		newSubscriber("b@example.org", subscribers.StatusActive, "daily"),
		newSubscriber("c@example.org", subscribers.StatusPending, "daily"),
		newSubscriber("d@example.org", subscribers.StatusUnsubscribed, "weekly"),
		newSubscriber("e@example.org", subscribers.StatusBounced, "Zeta"),
		newSubscriber("f@example.org", subscribers.StatusComplained),
	)
	got, err := s.CountSubscribers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []subscribers.NewsletterCount{
		{Newsletter: "Zeta", Status: subscribers.StatusBounced, Count: 1}, // byte order: upper case first
		{Newsletter: "daily", Status: subscribers.StatusActive, Count: 2},
		{Newsletter: "daily", Status: subscribers.StatusPending, Count: 1},
		{Newsletter: "weekly", Status: subscribers.StatusActive, Count: 1},
		{Newsletter: "weekly", Status: subscribers.StatusUnsubscribed, Count: 1},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("CountSubscribers\n got %+v\nwant %+v", got, want)
	}
}

// testDailyActivity: events are counted per UTC day and kind over
// [since, until); days without events are absent.
func testDailyActivity(t *testing.T, s AdminStore) {
	ctx := t.Context()
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	since, until := day0, day0.AddDate(0, 0, 3)
	if got, err := s.DailyActivity(ctx, since, until); err != nil || len(got) != 0 {
		t.Fatalf("DailyActivity on an empty store = %v, %v; want none", got, err)
	}
	sub := create(t, s, newSubscriber("log@example.org", subscribers.StatusActive, "daily"))[0]
	events := []struct {
		at           time.Time
		kind, detail string
	}{
		{since.Add(-time.Millisecond), subscribers.EventSignup, ""}, // before the range
		{day0, subscribers.EventSignup, "form"},
		{day0.Add(time.Hour), subscribers.EventSignup, "api"},
		{day0.Add(2 * time.Hour), subscribers.EventImport, "pending"},
		{day0.Add(3 * time.Hour), subscribers.EventImport, "active"},
		{day0.Add(4 * time.Hour), subscribers.EventImport, "activated"}, // not an address created
		{day0.Add(5 * time.Hour), subscribers.EventConfirm, ""},
		{day0.Add(24*time.Hour - time.Millisecond), subscribers.EventUnsubscribe, "link"},
		// day0+1: none.
		{day0.AddDate(0, 0, 2), "bounce", "soft bounce"},
		{day0.AddDate(0, 0, 2).Add(time.Hour), subscribers.EventStatusChange, "bounced: 5.1.1"},
		{day0.AddDate(0, 0, 2).Add(2 * time.Hour), "complaint", "via feedback loop"},
		{day0.AddDate(0, 0, 2).Add(3 * time.Hour), subscribers.EventStatusChange, "complained via abuse report"},
		{day0.AddDate(0, 0, 2).Add(4 * time.Hour), subscribers.EventStatusChange, "unsubscribed"},
		{until, subscribers.EventSignup, ""}, // after the range
	}
	update(t, s, func(tx subscribers.Tx) error {
		for _, e := range events {
			if err := tx.AddEvent(subscribers.Event{SubscriberID: sub.ID, At: e.at, Kind: e.kind, Detail: e.detail}); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.DailyActivity(ctx, since, until)
	if err != nil {
		t.Fatal(err)
	}
	want := []subscribers.DayActivity{
		{Day: day0, Signups: 2, Imports: 2, Confirmations: 1, Unsubscribes: 1},
		{Day: day0.AddDate(0, 0, 2), Bounces: 2, Complaints: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("DailyActivity\n got %+v\nwant %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.Day.Equal(w.Day) || g.Day.Location() != time.UTC {
			t.Errorf("day %d is %v, want %v UTC", i, g.Day, w.Day)
		}
		g.Day, w.Day = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("day %d counts\n got %+v\nwant %+v", i, g, w)
		}
	}

	// A narrower window counts only its own days.
	got, err = s.DailyActivity(ctx, day0.AddDate(0, 0, 1), until)
	if err != nil || len(got) != 1 || !got[0].Day.Equal(day0.AddDate(0, 0, 2)) {
		t.Fatalf("DailyActivity of the last two days = %+v, %v; want day 2 only", got, err)
	}
}
