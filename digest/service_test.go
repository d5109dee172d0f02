package digest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald"
	"herald/articles"
	"herald/delivery"
	"herald/digest"
	"herald/store/sqlite"
	"herald/subscribers"
)

// clock is a time the test moves; safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Monday 2026-03-02, 06:00 UTC: an hour before the daily slot.
var start = time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)

// slotAt is the daily 07:00 UTC slot, days after start's.
func slotAt(days int) time.Time { return time.Date(2026, 3, 2+days, 7, 0, 0, 0, time.UTC) }

// env is a digest Service over a real SQLite file, with a clock.
type env struct {
	path  string
	db    *sqlite.DB
	svc   *digest.Service
	clock *clock
	nls   []digest.Newsletter
}

func daily(t testing.TB) digest.Newsletter {
	s, err := digest.ParseSchedule("0 7 * * *", "UTC")
	if err != nil {
		t.Fatal(err)
	}
	return digest.Newsletter{ID: "daily", Name: "The Daily", Schedule: s}
}

func newEnv(t testing.TB, opts ...func(*digest.Options)) *env {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "herald.db"), clock: &clock{t: start}, nls: []digest.Newsletter{daily(t)}}
	e.open(t, opts...)
	return e
}

// open opens the file (again: a restart) and a new Service over it.
func (e *env) open(t testing.TB, opts ...func(*digest.Options)) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), e.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.db = db
	e.svc = e.service(t, db, opts...)
}

func (e *env) service(t testing.TB, store digest.Store, opts ...func(*digest.Options)) *digest.Service {
	t.Helper()
	o := digest.Options{MessageIDDomain: "news.example", Now: e.clock.Now}
	for _, f := range opts {
		f(&o)
	}
	svc, err := digest.NewService(store, e.db, e.nls, o)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// articles adds API articles published at the given times, learned of at
// the clock's time, and returns their ids.
func (e *env) articles(t testing.TB, published ...time.Time) []int64 {
	t.Helper()
	var out []int64
	err := e.db.UpdateArticles(context.Background(), func(tx articles.Tx) error {
		for _, p := range published {
			a := &articles.Article{
				URL: fmt.Sprintf("https://news.example/%d-%d", p.UnixNano(), len(out)), Title: "Story " + p.Format(time.RFC3339),
				PublishedAt: p, UpdatedAt: p, Source: articles.SourceAPI, CreatedAt: e.clock.Now(), Hash: "h",
			}
			if err := tx.CreateArticle(a); err != nil {
				return err
			}
			out = append(out, a.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readers adds active subscribers of daily and returns their ids.
func (e *env) readers(t testing.TB, n int) []int64 {
	t.Helper()
	var out []int64
	err := e.db.Update(context.Background(), func(tx subscribers.Tx) error {
		for range n {
			now := e.clock.Now()
			s := &subscribers.Subscriber{
				Email: fmt.Sprintf("r%d.%d@readers.example", now.UnixNano(), len(out)), Status: subscribers.StatusActive,
				Newsletters: []string{"daily"}, CreatedAt: now, UpdatedAt: now,
			}
			if err := tx.CreateSubscriber(s); err != nil {
				return err
			}
			out = append(out, s.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) runDue(t *testing.T) {
	t.Helper()
	if err := e.svc.RunDue(t.Context()); err != nil {
		t.Fatalf("RunDue at %v: %v", e.clock.Now(), err)
	}
}

func (e *env) issues(t *testing.T) []*digest.Issue {
	t.Helper()
	list, err := e.svc.Issues(t.Context(), digest.IssueFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	raw, err := sql.Open("sqlite3", e.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var n int
	if err := raw.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// deliver claims every due message and settles it as sent; it returns the
// article ids each subscriber's message carried.
func (e *env) deliver(t *testing.T) map[int64][]int64 {
	t.Helper()
	got := map[int64][]int64{}
	for {
		jobs, err := e.db.ClaimMessages(t.Context(), "test", e.clock.Now(), time.Minute, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			return got
		}
		results := make([]delivery.Result, len(jobs))
		for i, j := range jobs {
			if _, dup := got[j.SubscriberID]; dup {
				t.Fatalf("subscriber %d got two digests", j.SubscriberID)
			}
			if j.MessageID != digest.MessageID(j.IssueID, j.SubscriberID, "news.example") {
				t.Fatalf("Message-ID %q", j.MessageID)
			}
			ed, as, err := e.svc.EditionArticles(t.Context(), j.EditionID)
			if err != nil {
				t.Fatal(err)
			}
			if ed.IssueID != j.IssueID || len(as) != len(ed.ArticleIDs) {
				t.Fatalf("edition %+v of job %+v: %d articles", ed, j, len(as))
			}
			got[j.SubscriberID] = ed.ArticleIDs
			results[i] = delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: delivery.OutcomeSent, At: e.clock.Now()}
		}
		if err := e.db.SettleMessages(t.Context(), "test", results); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewService(t *testing.T) {
	e := newEnv(t)
	for _, nls := range [][]digest.Newsletter{{{ID: ""}}, {{ID: "a"}, {ID: "a"}}} {
		if _, err := digest.NewService(e.db, e.db, nls, digest.Options{}); err == nil {
			t.Errorf("NewService(%+v) succeeded", nls)
		}
	}
	n, ok := e.svc.Newsletter("daily")
	if !ok || n.MaxArticles != 10 || n.NewReaderArticles != 3 || n.Lookback != 30*24*time.Hour || n.Name != "The Daily" {
		t.Fatalf("Newsletter(daily) = %+v, %v; want the defaults applied", n, ok)
	}
	if _, ok := e.svc.Newsletter("nope"); ok {
		t.Fatal("Newsletter(nope) found")
	}
	if got := e.svc.Newsletters(); len(got) != 1 || got[0].ID != "daily" {
		t.Fatalf("Newsletters() = %+v", got)
	}
	if got, want := digest.MessageID(7, 42, "news.example"), "herald.digest.7.42@news.example"; got != want {
		t.Fatalf("MessageID = %q, want %q", got, want)
	}
}

func TestScheduledSlotMakesOneIssue(t *testing.T) {
	e := newEnv(t)
	e.runDue(t) // first seen at 06:00: the 07:00 slot of the day before is never sent
	if got := e.issues(t); len(got) != 0 {
		t.Fatalf("issues before the first slot: %+v", got)
	}
	e.clock.Set(start.Add(10 * time.Minute))
	arts := e.articles(t, start.Add(-time.Hour), start.Add(-2*time.Hour))
	subs := e.readers(t, 5)

	e.clock.Set(slotAt(0).Add(20 * time.Second))
	e.runDue(t)
	e.runDue(t)
	list := e.issues(t)
	if len(list) != 1 {
		t.Fatalf("%d issues after two passes, want 1", len(list))
	}
	iss := list[0]
	if !iss.Slot.Equal(slotAt(0)) || iss.Manual || iss.Status != digest.IssueSending || iss.Readers != 5 ||
		!slices.Equal(iss.ArticleIDs, []int64{arts[0], arts[1]}) || iss.Subject != "The Daily — March 2, 2026" {
		t.Fatalf("issue = %+v", iss)
	}
	if n := e.count(t, `SELECT count(*) FROM messages WHERE issue_id = ? AND priority = 10 AND kind = 'digest'`, iss.ID); n != len(subs) {
		t.Fatalf("%d messages, want %d", n, len(subs))
	}
	p, err := e.svc.Progress(t.Context(), iss.ID)
	if err != nil || p != (digest.Progress{Total: 5, Queued: 5}) {
		t.Fatalf("Progress = %+v, %v", p, err)
	}
	if _, err := e.svc.Progress(t.Context(), 999); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("Progress(999): %v, want ENOTFOUND", err)
	}

	// Delivered and settled: the next pass marks the issue sent.
	e.clock.Set(slotAt(0).Add(time.Minute))
	got := e.deliver(t)
	for _, id := range subs {
		if !slices.Equal(got[id], []int64{arts[0], arts[1]}) {
			t.Fatalf("subscriber %d got %v", id, got[id])
		}
	}
	e.runDue(t)
	if iss, _ = e.svc.Issue(t.Context(), iss.ID); iss.Status != digest.IssueSent || !iss.CompletedAt.Equal(slotAt(0).Add(time.Minute)) {
		t.Fatalf("issue after delivery = %+v, want sent", iss)
	}
	as, err := e.svc.IssueArticles(t.Context(), iss)
	if err != nil || len(as) != 2 || as[0].ID != arts[0] || as[0].Title == "" {
		t.Fatalf("IssueArticles = %v, %v", as, err)
	}
}

func TestRacingServicesMakeOneIssue(t *testing.T) {
	e := newEnv(t, func(o *digest.Options) { o.BatchSize = 7 })
	e.runDue(t)
	e.articles(t, start.Add(-time.Hour))
	subs := e.readers(t, 50)
	// A second process on the same file, with its own connections.
	other, err := sqlite.Open(t.Context(), e.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	svcs := []*digest.Service{e.svc, e.service(t, other, func(o *digest.Options) { o.BatchSize = 7 })}

	e.clock.Set(slotAt(0))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = svcs[i%2].RunDue(t.Context()) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	list := e.issues(t)
	if len(list) != 1 || list[0].Readers != len(subs) || list[0].Status != digest.IssueSending {
		t.Fatalf("issues after racing passes: %+v", list)
	}
	if n := e.count(t, `SELECT count(DISTINCT subscriber_id) FROM messages WHERE issue_id = ?`, list[0].ID); n != len(subs) {
		t.Fatalf("%d readers have a message, want %d", n, len(subs))
	}
	if n := e.count(t, `SELECT sum(readers) FROM editions WHERE issue_id = ?`, list[0].ID); n != len(subs) {
		t.Fatalf("editions count %d readers, want %d", n, len(subs))
	}
}

// failingStore fails EnqueueIssue after ok successful calls: a crash in the
// middle of a build.
type failingStore struct {
	*sqlite.DB
	ok    int32
	calls atomic.Int32
}

func (f *failingStore) EnqueueIssue(ctx context.Context, issueID int64, batch []digest.IssueMessage, now time.Time) error {
	if f.calls.Add(1) > f.ok {
		return errors.New("power cut")
	}
	return f.DB.EnqueueIssue(ctx, issueID, batch, now)
}

func TestRestartResumesBuild(t *testing.T) {
	e := newEnv(t)
	e.runDue(t)
	arts := e.articles(t, start.Add(-time.Hour), start.Add(-2*time.Hour), start.Add(-3*time.Hour), start.Add(-4*time.Hour))
	subs := e.readers(t, 25)

	e.clock.Set(slotAt(0))
	crashing := e.service(t, &failingStore{DB: e.db, ok: 2}, func(o *digest.Options) { o.BatchSize = 5 })
	if err := crashing.RunDue(t.Context()); err == nil {
		t.Fatal("RunDue with a failing store succeeded")
	}
	list := e.issues(t)
	if len(list) != 1 || list[0].Status != digest.IssueBuilding {
		t.Fatalf("after the crash: %+v, want one issue building", list)
	}
	if n := e.count(t, `SELECT count(*) FROM messages`); n != 10 {
		t.Fatalf("%d messages before the restart, want the first two batches (10)", n)
	}

	// Restart: a new Service on the same file finishes the build.
	e.clock.Set(slotAt(0).Add(30 * time.Second))
	e.open(t, func(o *digest.Options) { o.BatchSize = 5 })
	e.runDue(t)
	list = e.issues(t)
	if len(list) != 1 || list[0].Status != digest.IssueSending || list[0].Readers != len(subs) {
		t.Fatalf("after the restart: %+v, want one issue sending to %d", list, len(subs))
	}
	if n := e.count(t, `SELECT count(*) FROM messages`); n != len(subs) {
		t.Fatalf("%d messages, want %d (no duplicates)", n, len(subs))
	}
	if n := e.count(t, `SELECT count(*) FROM editions`); n != 1 {
		t.Fatalf("%d editions, want 1", n)
	}
	got := e.deliver(t)
	for _, id := range subs {
		if !slices.Equal(got[id], arts[:3]) {
			t.Fatalf("subscriber %d got %v, want %v", id, got[id], arts[:3])
		}
	}
}

func TestDowntimeMakesOneCatchUpIssue(t *testing.T) {
	e := newEnv(t)
	e.runDue(t)
	e.articles(t, start.Add(-time.Hour))
	e.readers(t, 3)
	// Down from Monday 06:00 to Thursday 08:00: four slots passed.
	e.clock.Set(slotAt(3).Add(time.Hour))
	e.runDue(t)
	e.runDue(t)
	list := e.issues(t)
	if len(list) != 1 || !list[0].Slot.Equal(slotAt(3)) || list[0].Readers != 3 {
		t.Fatalf("issues after downtime: %+v, want one for %v", list, slotAt(3))
	}
}

func TestNothingNew(t *testing.T) {
	e := newEnv(t)
	e.runDue(t)
	e.readers(t, 4)
	e.articles(t, start.Add(-40*24*time.Hour)) // outside Lookback

	e.clock.Set(slotAt(0))
	e.runDue(t)
	list := e.issues(t)
	if len(list) != 1 || list[0].Status != digest.IssueEmpty || list[0].Readers != 0 || list[0].CompletedAt.IsZero() {
		t.Fatalf("issue with nothing new = %+v, want empty", list)
	}
	if n := e.count(t, `SELECT count(*) FROM messages`); n != 0 {
		t.Fatalf("%d messages, want none", n)
	}

	_, err := e.svc.SendNow(t.Context(), "daily")
	if !herald.IsCode(err, herald.ECONFLICT) || herald.ErrorMessage(err) !=
		"Nothing new to send for The Daily: no reader has an article they have not received." {
		t.Fatalf("SendNow with nothing new: %v", err)
	}
	if got := e.issues(t); len(got) != 1 {
		t.Fatalf("SendNow with nothing new stored an issue: %+v", got)
	}
	if _, err := e.svc.SendNow(t.Context(), "nope"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("SendNow(nope): %v, want ENOTFOUND", err)
	}
}

func TestSendNowTwice(t *testing.T) {
	e := newEnv(t)
	arts := e.articles(t, start.Add(-time.Hour))
	subs := e.readers(t, 3)
	e.clock.Set(start.Add(time.Minute))
	iss, err := e.svc.SendNow(t.Context(), "daily")
	if err != nil {
		t.Fatal(err)
	}
	if !iss.Manual || iss.Status != digest.IssueSending || iss.Readers != len(subs) ||
		!iss.Slot.Equal(start.Add(time.Minute)) || !slices.Equal(iss.ArticleIDs, arts) {
		t.Fatalf("SendNow = %+v", iss)
	}
	// The first issue's messages are still queued: they count as received.
	e.clock.Set(start.Add(2 * time.Minute))
	if _, err := e.svc.SendNow(t.Context(), "daily"); !herald.IsCode(err, herald.ECONFLICT) {
		t.Fatalf("second SendNow: %v, want ECONFLICT", err)
	}
	// The manual issue just before the slot does not stop it: the slot is
	// later, and it is empty, as nobody has anything new.
	e.clock.Set(slotAt(0))
	e.runDue(t)
	list := e.issues(t)
	if len(list) != 2 || list[0].Status != digest.IssueEmpty || list[1].ID != iss.ID {
		t.Fatalf("issues = %+v", list)
	}
}

func TestNewAndReturningReaders(t *testing.T) {
	e := newEnv(t)
	e.runDue(t)
	e.clock.Set(start.Add(time.Minute))
	old := e.articles(t, start.Add(-5*time.Hour), start.Add(-4*time.Hour), start.Add(-3*time.Hour),
		start.Add(-2*time.Hour), start.Add(-time.Hour))
	first := e.readers(t, 2)

	e.clock.Set(slotAt(0))
	e.runDue(t)
	got := e.deliver(t)
	newest3 := []int64{old[4], old[3], old[2]}
	for _, id := range first {
		if !slices.Equal(got[id], newest3) {
			t.Fatalf("new reader %d got %v, want the newest three %v", id, got[id], newest3)
		}
	}

	// During the day: two new stories, one late-ingested story published
	// yesterday, one archive import, and a new reader.
	e.clock.Set(slotAt(0).Add(3 * time.Hour))
	news := e.articles(t, slotAt(0).Add(2*time.Hour), slotAt(0).Add(time.Hour))
	late := e.articles(t, slotAt(0).Add(-20*time.Hour))
	e.articles(t, slotAt(0).Add(-10*24*time.Hour))
	second := e.readers(t, 1)

	reader, preview, err := e.svc.Preview(t.Context(), "daily", "")
	if err != nil || reader.Email != digest.SampleReader || len(preview) != 3 || preview[0].ID != news[0] || preview[0].Title == "" {
		t.Fatalf("Preview(sample) = %+v, %v, %v", reader, ids(preview), err)
	}

	e.clock.Set(slotAt(1))
	e.runDue(t)
	got = e.deliver(t)
	wantReturning := []int64{news[0], news[1], late[0]}
	for _, id := range first {
		if !slices.Equal(got[id], wantReturning) {
			t.Fatalf("returning reader %d got %v, want only what is new %v", id, got[id], wantReturning)
		}
	}
	if want := []int64{news[0], news[1], old[4]}; !slices.Equal(got[second[0]], want) {
		t.Fatalf("new reader got %v, want the newest three %v", got[second[0]], want)
	}
	list := e.issues(t)
	if len(list) != 2 || !slices.Equal(list[0].ArticleIDs, wantReturning) || list[0].Readers != 3 {
		t.Fatalf("second issue %+v: want the returning readers' edition as the main one", list[0])
	}
}

func TestReturningAfterFailure(t *testing.T) {
	e := newEnv(t)
	e.runDue(t)
	e.clock.Set(start.Add(time.Minute))
	a := e.articles(t, start.Add(-time.Hour))
	sub := e.readers(t, 1)[0]
	e.clock.Set(slotAt(0))
	e.runDue(t)
	// The first issue's message fails: the reader never got it.
	jobs, err := e.db.ClaimMessages(t.Context(), "w", e.clock.Now(), time.Minute, 10)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v, %v", jobs, err)
	}
	err = e.db.SettleMessages(t.Context(), "w", []delivery.Result{{ID: jobs[0].ID, SubscriberID: sub, Outcome: delivery.OutcomeFailed, At: e.clock.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(slotAt(0).Add(time.Hour))
	b := e.articles(t, slotAt(0).Add(30*time.Minute))
	e.clock.Set(slotAt(1))
	e.runDue(t)
	// Still a new reader: the newest three of what there is.
	if got := e.deliver(t)[sub]; !slices.Equal(got, []int64{b[0], a[0]}) {
		t.Fatalf("reader whose issue failed got %v, want %v", got, []int64{b[0], a[0]})
	}
}

func TestPreview(t *testing.T) {
	e := newEnv(t)
	e.runDue(t)
	e.clock.Set(start.Add(time.Minute))
	arts := e.articles(t, start.Add(-4*time.Hour), start.Add(-3*time.Hour), start.Add(-2*time.Hour), start.Add(-time.Hour))
	sub := e.readers(t, 1)[0]
	e.clock.Set(slotAt(0))
	e.runDue(t)
	e.deliver(t)
	e.clock.Set(slotAt(0).Add(time.Hour))
	fresh := e.articles(t, slotAt(0).Add(30*time.Minute))

	s, err := e.db.FindSubscriberByID(t.Context(), sub)
	if err != nil {
		t.Fatal(err)
	}
	r, as, err := e.svc.Preview(t.Context(), "daily", "  "+s.Email+" ")
	if err != nil || r.SubscriberID != sub || !slices.Equal(ids(as), fresh) || as[0].Title == "" {
		t.Fatalf("Preview(reader) = %+v, %v, %v; want %v", r, ids(as), err, fresh)
	}
	r, as, err = e.svc.Preview(t.Context(), "daily", "")
	if err != nil || r.SubscriberID != 0 || !slices.Equal(ids(as), []int64{fresh[0], arts[3], arts[2]}) {
		t.Fatalf("Preview(sample) = %+v, %v, %v", r, ids(as), err)
	}
	if _, _, err := e.svc.Preview(t.Context(), "daily", "stranger@example.org"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("Preview(stranger): %v, want ENOTFOUND", err)
	}
	if _, _, err := e.svc.Preview(t.Context(), "weekly", ""); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("Preview(weekly): %v, want ENOTFOUND", err)
	}
}

func TestDeletedArticleSkipped(t *testing.T) {
	e := newEnv(t)
	arts := e.articles(t, start.Add(-2*time.Hour), start.Add(-time.Hour))
	e.readers(t, 1)
	iss, err := e.svc.SendNow(t.Context(), "daily")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite3", e.path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`DELETE FROM articles WHERE id = ?`, arts[1]); err != nil {
		t.Fatal(err)
	}
	as, err := e.svc.IssueArticles(t.Context(), iss)
	if err != nil || !slices.Equal(ids(as), arts[:1]) {
		t.Fatalf("IssueArticles = %v, %v; want %v", ids(as), err, arts[:1])
	}
	var editionID int64
	if err := raw.QueryRow(`SELECT id FROM editions WHERE issue_id = ?`, iss.ID).Scan(&editionID); err != nil {
		t.Fatal(err)
	}
	ed, as, err := e.svc.EditionArticles(t.Context(), editionID)
	if err != nil || len(ed.ArticleIDs) != 2 || !slices.Equal(ids(as), arts[:1]) {
		t.Fatalf("EditionArticles = %+v, %v, %v", ed, ids(as), err)
	}
	if _, _, err := e.svc.EditionArticles(t.Context(), 999); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("EditionArticles(999): %v, want ENOTFOUND", err)
	}
}

func TestScheduler(t *testing.T) {
	e := newEnv(t)
	e.articles(t, start.Add(-time.Hour))
	e.readers(t, 2)
	e.runDue(t)
	e.clock.Set(slotAt(0))

	// Not the leader: no pass.
	// The follower is asked three times (so passes repeat, and an error from
	// the lock does not stop the loop), then stopped: no timing involved.
	var asked atomic.Int32
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s := &digest.Scheduler{Service: e.svc, Interval: 5 * time.Millisecond,
		Leader: func(context.Context) (func(), bool, error) {
			n := asked.Add(1)
			if n >= 3 {
				cancel()
			}
			if n%2 == 0 {
				return nil, false, errors.New("lock lost")
			}
			return nil, false, nil
		}}
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil on ctx.Done", err)
	}
	if asked.Load() < 3 {
		t.Fatalf("leader asked %d times before Run returned, want 3: a pass every interval", asked.Load())
	}
	if got := e.issues(t); len(got) != 0 {
		t.Fatalf("a follower made issues: %+v", got)
	}

	// The leader makes the issue, and releases the lock after each pass.
	var released atomic.Int32
	ctx, cancel = context.WithCancel(t.Context())
	done := make(chan error, 1)
	s = &digest.Scheduler{Service: e.svc, Interval: 5 * time.Millisecond,
		Leader: func(context.Context) (func(), bool, error) { return func() { released.Add(1) }, true, nil }}
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if list := e.issues(t); len(list) == 1 && list[0].Status == digest.IssueSending {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if list := e.issues(t); len(list) != 1 || list[0].Readers != 2 {
		t.Fatalf("issues = %+v", list[0])
	}
	if released.Load() == 0 {
		t.Fatal("the leader lock was never released")
	}
}

// gatedStore holds every EnqueueIssue until its gate opens or the call's
// context ends: a build that takes longer than a request may.
type gatedStore struct {
	*sqlite.DB
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedStore) EnqueueIssue(ctx context.Context, issueID int64, batch []digest.IssueMessage, now time.Time) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.DB.EnqueueIssue(ctx, issueID, batch, now)
}

// TestQueuedAfterEachBatch: Options.Queued is called once per committed
// batch of an issue's messages, so that a delivery engine woken by it
// finds that batch in the outbox (read here on a connection of its own).
func TestQueuedAfterEachBatch(t *testing.T) {
	var e *env
	var seen []int
	e = newEnv(t, func(o *digest.Options) {
		o.BatchSize = 5
		o.Queued = func() { seen = append(seen, e.count(t, `SELECT count(*) FROM messages WHERE status = 'queued'`)) }
	})
	e.runDue(t)
	e.articles(t, start.Add(-time.Hour))
	e.readers(t, 12)
	if len(seen) != 0 {
		t.Fatalf("Queued called %v before any issue", seen)
	}
	if _, err := e.svc.SendNow(t.Context(), "daily"); err != nil {
		t.Fatal(err)
	}
	if want := []int{5, 10, 12}; !slices.Equal(seen, want) {
		t.Fatalf("Queued saw %v messages in the outbox, want %v (one call per committed batch of 5)", seen, want)
	}
}

// StartNow answers with the issue building while its build goes on in the
// background, past the end of the caller's context; it reports the same
// errors as SendNow; Stop cuts a running build off and leaves the issue
// building for RunDue to finish.
func TestStartNow(t *testing.T) {
	e := newEnv(t)
	e.articles(t, start.Add(-time.Hour))
	subs := e.readers(t, 7)
	e.clock.Set(start.Add(time.Minute))
	g := &gatedStore{DB: e.db, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	svc := e.service(t, g, func(o *digest.Options) { o.BatchSize = 3 })
	t.Cleanup(svc.Stop)

	if _, err := svc.StartNow(t.Context(), "monthly"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("unknown newsletter: err = %v, want ENOTFOUND", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	iss, err := svc.StartNow(ctx, "daily")
	cancel() // the request is over; the build must not care
	if err != nil {
		t.Fatal(err)
	}
	if iss.Status != digest.IssueBuilding || !iss.Manual || iss.ID == 0 {
		t.Fatalf("StartNow = %+v, want a manual issue building", iss)
	}
	<-g.entered // the build is running, held at its first batch
	close(g.gate)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := svc.Issue(t.Context(), iss.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == digest.IssueSending {
			if got.Readers != len(subs) {
				t.Fatalf("built issue = %+v, want %d readers", got, len(subs))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issue still %s after 10 s", got.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Everyone has it now: nothing new, as with SendNow.
	e.clock.Set(start.Add(2 * time.Minute))
	if _, err := svc.StartNow(t.Context(), "daily"); !herald.IsCode(err, herald.ECONFLICT) {
		t.Errorf("second StartNow: err = %v, want ECONFLICT", err)
	}

	// A build cut off by Stop stays building; RunDue finishes it.
	e.articles(t, start.Add(time.Minute))
	e.clock.Set(start.Add(3 * time.Minute))
	held := &gatedStore{DB: e.db, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	stopping := e.service(t, held, func(o *digest.Options) { o.BatchSize = 3 })
	second, err := stopping.StartNow(t.Context(), "daily")
	if err != nil {
		t.Fatal(err)
	}
	<-held.entered
	stopping.Stop()
	if got, err := e.svc.Issue(t.Context(), second.ID); err != nil || got.Status != digest.IssueBuilding {
		t.Fatalf("after Stop: %+v, %v; want the issue still building", got, err)
	}
	e.runDue(t)
	if got, err := e.svc.Issue(t.Context(), second.ID); err != nil || got.Status != digest.IssueSending || got.Readers != len(subs) {
		t.Fatalf("after RunDue: %+v, %v; want it built for %d readers", got, err, len(subs))
	}
}
