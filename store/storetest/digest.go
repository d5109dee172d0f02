package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"herald"
	"herald/delivery"
	"herald/digest"
	"herald/subscribers"
)

// DigestStore is what the digest contract suite needs from an engine: the
// digest store, and the subscriber and outbox stores to set the scene.
type DigestStore interface {
	digest.Store
	subscribers.Store
	delivery.Store
}

// RunDigest runs the contract suite of digest.Store. open must return a new,
// migrated, empty store for each call, and arrange its own cleanup.
func RunDigest(t *testing.T, open func(t *testing.T) DigestStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s DigestStore)
	}{
		{"SeenNewsletter", testSeenNewsletter},
		{"CreateIssueConflictPerSlot", testCreateIssueConflict},
		{"CreateIssueRace", testCreateIssueRace},
		{"FindIssues", testFindIssues},
		{"ReadersPaging", testReadersPaging},
		{"ReadersSince", testReadersSince},
		{"Reader", testReader},
		{"EnqueueIssueIdempotent", testEnqueueIdempotent},
		{"EnqueueIssueSkipsInactive", testEnqueueSkipsInactive},
		{"EnqueueIssueInvalid", testEnqueueInvalid},
		{"EditionsShared", testEditionsShared},
		{"FinishBuilding", testFinishBuilding},
		{"ClaimCarriesEdition", testClaimCarriesEdition},
		{"ProgressAndSettleIssues", testProgressAndSettle},
		{"SettleIssue", testSettleIssue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// digest helpers

// dgReaders creates active subscribers of the newsletter with addresses
// <name>@readers.example and returns their ids.
func dgReaders(t *testing.T, s DigestStore, newsletter string, names ...string) []int64 {
	t.Helper()
	var out []int64
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		for _, n := range names {
			sub := newSubscriber(n+"@readers.example", subscribers.StatusActive, newsletter)
			sub.Name = "Reader " + n
			if err := tx.CreateSubscriber(sub); err != nil {
				return fmt.Errorf("create %s: %w", n, err)
			}
			out = append(out, sub.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create readers: %v", err)
	}
	return out
}

func dgSetStatus(t *testing.T, s DigestStore, id int64, status subscribers.Status) {
	t.Helper()
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		sub, err := tx.SubscriberByID(id)
		if err != nil {
			return err
		}
		sub.Status = status
		return tx.UpdateSubscriber(sub)
	})
	if err != nil {
		t.Fatalf("set status of %d: %v", id, err)
	}
}

func dgIssue(t *testing.T, s DigestStore, newsletter string, slot time.Time) *digest.Issue {
	t.Helper()
	iss := &digest.Issue{NewsletterID: newsletter, Slot: slot, Subject: "Issue " + slot.Format(time.RFC3339), CreatedAt: slot}
	if err := s.CreateIssue(t.Context(), iss); err != nil {
		t.Fatalf("CreateIssue(%s, %v): %v", newsletter, slot, err)
	}
	if iss.ID == 0 || iss.Status != digest.IssueBuilding {
		t.Fatalf("CreateIssue left id %d, status %q; want an id and building", iss.ID, iss.Status)
	}
	return iss
}

// dgMessages returns one message per subscriber, all with the article ids
// given.
func dgMessages(issueID int64, subs []int64, articleIDs ...int64) []digest.IssueMessage {
	out := make([]digest.IssueMessage, len(subs))
	for i, id := range subs {
		out[i] = digest.IssueMessage{SubscriberID: id, ArticleIDs: articleIDs, MessageID: digest.MessageID(issueID, id, "test.example")}
	}
	return out
}

func dgEnqueue(t *testing.T, s DigestStore, issueID int64, batch []digest.IssueMessage, now time.Time) {
	t.Helper()
	if err := s.EnqueueIssue(t.Context(), issueID, batch, now); err != nil {
		t.Fatalf("EnqueueIssue(%d): %v", issueID, err)
	}
}

func dgFinish(t *testing.T, s DigestStore, issueID int64, now time.Time) *digest.Issue {
	t.Helper()
	iss, err := s.FinishBuilding(t.Context(), issueID, now)
	if err != nil {
		t.Fatalf("FinishBuilding(%d): %v", issueID, err)
	}
	return iss
}

func dgProgress(t *testing.T, s DigestStore, issueID int64) digest.Progress {
	t.Helper()
	p, err := s.IssueProgress(t.Context(), issueID)
	if err != nil {
		t.Fatalf("IssueProgress(%d): %v", issueID, err)
	}
	return p
}

func dgFind(t *testing.T, s DigestStore, id int64) *digest.Issue {
	t.Helper()
	iss, err := s.FindIssue(t.Context(), id)
	if err != nil {
		t.Fatalf("FindIssue(%d): %v", id, err)
	}
	return iss
}

// dgPause pauses a subscriber until the given time.
func dgPause(t *testing.T, s DigestStore, id int64, until time.Time) {
	t.Helper()
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		sub, err := tx.SubscriberByID(id)
		if err != nil {
			return err
		}
		sub.PausedUntil = until
		return tx.UpdateSubscriber(sub)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dgReadersAll reads every reader of the newsletter, pageSize at a time.
func dgReadersAll(t *testing.T, s DigestStore, newsletter string, pageSize int) []digest.Reader {
	t.Helper()
	var out []digest.Reader
	var after int64
	for {
		page, err := s.Readers(t.Context(), newsletter, after, pageSize, base())
		if err != nil {
			t.Fatalf("Readers(%s, %d, %d): %v", newsletter, after, pageSize, err)
		}
		if len(page) > pageSize {
			t.Fatalf("Readers returned %d, limit %d", len(page), pageSize)
		}
		out = append(out, page...)
		if len(page) < pageSize {
			return out
		}
		after = page[len(page)-1].SubscriberID
	}
}

func readerIDs(rs []digest.Reader) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.SubscriberID
	}
	return out
}

// Deliver claims every due message at now and settles each with the
// outcome picked by subscriber id (default sent). The engines' own tests
// use it too.
func Deliver(t *testing.T, s DigestStore, now time.Time, outcome map[int64]delivery.Outcome) []delivery.Job {
	t.Helper()
	jobs, err := s.ClaimMessages(t.Context(), "w", now, time.Minute, 1000)
	if err != nil {
		t.Fatalf("ClaimMessages: %v", err)
	}
	results := make([]delivery.Result, len(jobs))
	for i, j := range jobs {
		o := outcome[j.SubscriberID]
		if o == "" {
			o = delivery.OutcomeSent
		}
		results[i] = delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: o, At: now, Error: string(o)}
	}
	if err := s.SettleMessages(t.Context(), "w", results); err != nil {
		t.Fatalf("SettleMessages: %v", err)
	}
	return jobs
}

// digest tests

func testSeenNewsletter(t *testing.T, s DigestStore) {
	ctx := t.Context()
	first, err := s.SeenNewsletter(ctx, "daily", at(0))
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equal(at(0)) || first.Location() != time.UTC {
		t.Fatalf("first SeenNewsletter = %v, want %v UTC", first, at(0))
	}
	again, err := s.SeenNewsletter(ctx, "daily", at(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(at(0)) {
		t.Fatalf("second SeenNewsletter = %v, want the first sighting %v", again, at(0))
	}
	other, err := s.SeenNewsletter(ctx, "weekly", at(time.Hour))
	if err != nil || !other.Equal(at(time.Hour)) {
		t.Fatalf("SeenNewsletter(weekly) = %v, %v; want %v", other, err, at(time.Hour))
	}
}

func testCreateIssueConflict(t *testing.T, s DigestStore) {
	ctx := t.Context()
	if _, err := s.LastIssue(ctx, "daily"); herald.ErrorCode(err) != herald.ENOTFOUND {
		t.Fatalf("LastIssue with none: %v, want ENOTFOUND", err)
	}
	first := dgIssue(t, s, "daily", at(0))
	dup := &digest.Issue{NewsletterID: "daily", Slot: at(0), CreatedAt: at(time.Minute)}
	wantCode(t, s.CreateIssue(ctx, dup), herald.ECONFLICT)
	dgIssue(t, s, "weekly", at(0)) // the same slot, another newsletter
	later := dgIssue(t, s, "daily", at(24*time.Hour))
	manual := &digest.Issue{NewsletterID: "daily", Slot: at(2 * time.Hour), Manual: true, CreatedAt: at(2 * time.Hour)}
	if err := s.CreateIssue(ctx, manual); err != nil {
		t.Fatal(err)
	}

	last, err := s.LastIssue(ctx, "daily")
	if err != nil {
		t.Fatal(err)
	}
	if last.ID != later.ID || !last.Slot.Equal(at(24*time.Hour)) {
		t.Fatalf("LastIssue = %d at %v, want %d at %v", last.ID, last.Slot, later.ID, at(24*time.Hour))
	}
	got := dgFind(t, s, first.ID)
	if got.NewsletterID != "daily" || !got.Slot.Equal(at(0)) || got.Manual || got.Status != digest.IssueBuilding ||
		got.Subject != first.Subject || !got.CreatedAt.Equal(at(0)) || !got.CompletedAt.IsZero() ||
		got.Readers != 0 || len(got.ArticleIDs) != 0 {
		t.Fatalf("FindIssue = %+v, want %+v", got, first)
	}
	if got := dgFind(t, s, manual.ID); !got.Manual {
		t.Fatalf("manual issue read back as %+v", got)
	}
	if _, err := s.FindIssue(ctx, 9999); herald.ErrorCode(err) != herald.ENOTFOUND {
		t.Fatalf("FindIssue(9999): %v, want ENOTFOUND", err)
	}
}

func testCreateIssueRace(t *testing.T, s DigestStore) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.CreateIssue(t.Context(), &digest.Issue{NewsletterID: "daily", Slot: at(0), CreatedAt: at(0)})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch herald.ErrorCode(err) {
		case "":
			won++
		case herald.ECONFLICT:
		default:
			t.Fatalf("CreateIssue: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing CreateIssue calls won, want 1", won, n)
	}
}

func testFindIssues(t *testing.T, s DigestStore) {
	ctx := t.Context()
	a := dgIssue(t, s, "daily", at(0))
	b := dgIssue(t, s, "weekly", at(0))
	c := dgIssue(t, s, "daily", at(time.Hour))
	dgFinish(t, s, a.ID, at(time.Minute)) // empty
	find := func(f digest.IssueFilter) []int64 {
		t.Helper()
		list, err := s.FindIssues(ctx, f)
		if err != nil {
			t.Fatalf("FindIssues(%+v): %v", f, err)
		}
		out := make([]int64, len(list))
		for i, iss := range list {
			out[i] = iss.ID
		}
		return out
	}
	tests := []struct {
		f    digest.IssueFilter
		want []int64
	}{
		{digest.IssueFilter{}, []int64{c.ID, b.ID, a.ID}},
		{digest.IssueFilter{NewsletterID: "daily"}, []int64{c.ID, a.ID}},
		{digest.IssueFilter{Statuses: []digest.IssueStatus{digest.IssueBuilding}}, []int64{c.ID, b.ID}},
		{digest.IssueFilter{Statuses: []digest.IssueStatus{digest.IssueEmpty, digest.IssueSent}}, []int64{a.ID}},
		{digest.IssueFilter{BeforeID: c.ID}, []int64{b.ID, a.ID}},
		{digest.IssueFilter{Limit: 1}, []int64{c.ID}},
		{digest.IssueFilter{NewsletterID: "none"}, []int64{}},
	}
	for _, tt := range tests {
		if got := find(tt.f); !slices.Equal(got, tt.want) {
			t.Errorf("FindIssues(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
}

func testReadersPaging(t *testing.T, s DigestStore) {
	want := dgReaders(t, s, "daily", "a", "b", "c", "d", "e")
	dgReaders(t, s, "weekly", "w1", "w2")
	// Pending, unsubscribed and bounced subscribers are no readers.
	left := dgReaders(t, s, "daily", "left", "bounced")
	dgSetStatus(t, s, left[0], subscribers.StatusUnsubscribed)
	dgSetStatus(t, s, left[1], subscribers.StatusBounced)
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		return tx.CreateSubscriber(newSubscriber("pending@readers.example", subscribers.StatusPending, "daily"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// A reader paused at the time asked about is left out; a pause that
	// ended is no pause.
	paused := dgReaders(t, s, "daily", "paused", "resumed")
	dgPause(t, s, paused[0], at(time.Hour))
	dgPause(t, s, paused[1], at(-time.Hour))
	want = append(want, paused[1])
	more := dgReaders(t, s, "daily", "f")
	want = append(want, more...)

	for _, size := range []int{1, 2, 3, 100} {
		got := dgReadersAll(t, s, "daily", size)
		if !slices.Equal(readerIDs(got), want) {
			t.Fatalf("Readers by %d = %v, want %v", size, readerIDs(got), want)
		}
		for _, r := range got {
			if r.Email == "" || r.Name == "" || !r.Since.IsZero() {
				t.Fatalf("reader %+v: want an address, a name and no Since", r)
			}
		}
	}
	if got, err := s.Readers(t.Context(), "daily", want[len(want)-1], 10, base()); err != nil || len(got) != 0 {
		t.Fatalf("Readers after the last = %v, %v; want none", got, err)
	}
}

func testReadersSince(t *testing.T, s DigestStore) {
	subs := dgReaders(t, s, "daily", "sent", "failed", "queued", "new")
	dgReaders(t, s, "weekly", "other")
	bothID := dgReaders(t, s, "weekly", "both")[0]
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		sub, err := tx.SubscriberByID(bothID)
		if err != nil {
			return err
		}
		sub.Newsletters = []string{"daily", "weekly"}
		return tx.UpdateSubscriber(sub)
	})
	if err != nil {
		t.Fatal(err)
	}
	sent, failed, queued, fresh := subs[0], subs[1], subs[2], subs[3]

	// Issue 1 (daily) goes to sent, failed and both; the weekly issue to
	// both, later; issue 2 (daily) only to queued, and stays queued.
	one := dgIssue(t, s, "daily", at(0))
	dgEnqueue(t, s, one.ID, dgMessages(one.ID, []int64{sent, failed, bothID}, 1, 2), at(0))
	dgFinish(t, s, one.ID, at(0))
	Deliver(t, s, at(time.Minute), map[int64]delivery.Outcome{failed: delivery.OutcomeFailed})
	weekly := dgIssue(t, s, "weekly", at(2*time.Hour))
	dgEnqueue(t, s, weekly.ID, dgMessages(weekly.ID, []int64{bothID}, 3), at(2*time.Hour))
	Deliver(t, s, at(3*time.Hour), nil)
	two := dgIssue(t, s, "daily", at(5*time.Hour))
	dgEnqueue(t, s, two.ID, dgMessages(two.ID, []int64{queued}, 4), at(5*time.Hour))

	since := map[int64]time.Time{}
	for _, r := range dgReadersAll(t, s, "daily", 2) {
		since[r.SubscriberID] = r.Since
	}
	tests := []struct {
		name string
		id   int64
		want time.Time
	}{
		{"sent", sent, one.CreatedAt},
		{"failed: never received", failed, time.Time{}},
		{"queued: on its way", queued, two.CreatedAt},
		{"new", fresh, time.Time{}},
		{"both: the daily issue, not the later weekly one", bothID, one.CreatedAt},
	}
	for _, tt := range tests {
		got, ok := since[tt.id]
		if !ok {
			t.Fatalf("%s: reader %d missing from Readers", tt.name, tt.id)
		}
		if !got.Equal(tt.want) {
			t.Errorf("%s: Since = %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, r := range dgReadersAll(t, s, "weekly", 10) {
		if r.SubscriberID == bothID && !r.Since.Equal(weekly.CreatedAt) {
			t.Errorf("weekly Since of both = %v, want %v", r.Since, weekly.CreatedAt)
		}
	}
}

func testReader(t *testing.T, s DigestStore) {
	ctx := t.Context()
	ids := dgReaders(t, s, "daily", "ada", "gone")
	dgSetStatus(t, s, ids[1], subscribers.StatusUnsubscribed)
	r, err := s.Reader(ctx, "daily", "ADA@Readers.example")
	if err != nil {
		t.Fatal(err)
	}
	if r.SubscriberID != ids[0] || r.Email != "ada@readers.example" || r.Name != "Reader ada" || !r.Since.IsZero() {
		t.Fatalf("Reader = %+v", r)
	}
	for _, tt := range []struct{ newsletter, email string }{
		{"weekly", "ada@readers.example"},
		{"daily", "gone@readers.example"},
		{"daily", "nobody@readers.example"},
	} {
		if _, err := s.Reader(ctx, tt.newsletter, tt.email); herald.ErrorCode(err) != herald.ENOTFOUND {
			t.Errorf("Reader(%s, %s): %v, want ENOTFOUND", tt.newsletter, tt.email, err)
		}
	}
}

func testEnqueueIdempotent(t *testing.T, s DigestStore) {
	ctx := t.Context()
	subs := dgReaders(t, s, "daily", "a", "b", "c")
	iss := dgIssue(t, s, "daily", at(0))
	if n, err := s.LastEnqueued(ctx, iss.ID); err != nil || n != 0 {
		t.Fatalf("LastEnqueued before = %d, %v; want 0", n, err)
	}
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs[:2], 7, 5), at(0))
	if n, err := s.LastEnqueued(ctx, iss.ID); err != nil || n != subs[1] {
		t.Fatalf("LastEnqueued = %d, %v; want %d", n, err, subs[1])
	}
	// A resumed build enqueues the same readers again, and the rest.
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs, 7, 5), at(time.Minute))
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs, 7, 5), at(2*time.Minute))
	if p := dgProgress(t, s, iss.ID); p.Total != 3 || p.Queued != 3 {
		t.Fatalf("progress after enqueueing three readers thrice = %+v, want 3 queued", p)
	}
	fin := dgFinish(t, s, iss.ID, at(time.Hour))
	if fin.Readers != 3 || !slices.Equal(fin.ArticleIDs, []int64{7, 5}) {
		t.Fatalf("finished issue = %+v, want 3 readers of [7 5]", fin)
	}
	ed := dgEditionOf(t, s, iss.ID, subs[0])
	if ed.Readers != 3 {
		t.Fatalf("edition readers = %d, want 3 (a repeated enqueue counts nobody twice)", ed.Readers)
	}
}

// dgEditionOf returns the edition of the subscriber's message in the issue,
// through a claim (the claim is released straight after).
func dgEditionOf(t *testing.T, s DigestStore, issueID, subscriberID int64) *digest.Edition {
	t.Helper()
	jobs, err := s.ClaimMessages(t.Context(), "peek", at(1000*time.Hour), time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var editionID int64
	results := make([]delivery.Result, len(jobs))
	for i, j := range jobs {
		if j.IssueID == issueID && j.SubscriberID == subscriberID {
			editionID = j.EditionID
		}
		results[i] = delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: delivery.OutcomeRelease,
			At: at(1000 * time.Hour), NextAttemptAt: at(0)}
	}
	if err := s.SettleMessages(t.Context(), "peek", results); err != nil {
		t.Fatal(err)
	}
	if editionID == 0 {
		t.Fatalf("no claimed message of subscriber %d in issue %d", subscriberID, issueID)
	}
	ed, err := s.Edition(t.Context(), editionID)
	if err != nil {
		t.Fatalf("Edition(%d): %v", editionID, err)
	}
	if ed.IssueID != issueID {
		t.Fatalf("edition %d belongs to issue %d, want %d", ed.ID, ed.IssueID, issueID)
	}
	return ed
}

func testEnqueueSkipsInactive(t *testing.T, s DigestStore) {
	subs := dgReaders(t, s, "daily", "stays", "leaves")
	dgSetStatus(t, s, subs[1], subscribers.StatusUnsubscribed)
	iss := dgIssue(t, s, "daily", at(0))
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs, 1), at(0))
	if p := dgProgress(t, s, iss.ID); p.Total != 1 {
		t.Fatalf("progress = %+v, want the active reader only", p)
	}
	if fin := dgFinish(t, s, iss.ID, at(0)); fin.Readers != 1 {
		t.Fatalf("readers = %d, want 1", fin.Readers)
	}
}

func testEnqueueInvalid(t *testing.T, s DigestStore) {
	subs := dgReaders(t, s, "daily", "a", "b")
	iss := dgIssue(t, s, "daily", at(0))
	batch := dgMessages(iss.ID, subs, 1)
	batch[1].ArticleIDs = nil
	wantCode(t, s.EnqueueIssue(t.Context(), iss.ID, batch, at(0)), herald.EINVALID)
	if p := dgProgress(t, s, iss.ID); p.Total != 0 {
		t.Fatalf("an invalid batch wrote %+v", p)
	}
}

func testEditionsShared(t *testing.T, s DigestStore) {
	subs := dgReaders(t, s, "daily", "a", "b", "c", "d", "e")
	iss := dgIssue(t, s, "daily", at(0))
	// Equal article lists in distinct slices share an edition; the order
	// of the list is part of it.
	batch := []digest.IssueMessage{
		{SubscriberID: subs[0], ArticleIDs: []int64{3, 2, 1}},
		{SubscriberID: subs[1], ArticleIDs: []int64{3}},
		{SubscriberID: subs[2], ArticleIDs: []int64{3, 2, 1}},
	}
	later := []digest.IssueMessage{
		{SubscriberID: subs[3], ArticleIDs: []int64{1, 2, 3}},
		{SubscriberID: subs[4], ArticleIDs: []int64{3, 2, 1}},
	}
	for _, b := range [][]digest.IssueMessage{batch, later} {
		for i := range b {
			b[i].MessageID = digest.MessageID(iss.ID, b[i].SubscriberID, "test.example")
		}
	}
	dgEnqueue(t, s, iss.ID, batch, at(0))
	dgEnqueue(t, s, iss.ID, later, at(time.Minute))

	e0, e1, e2, e3, e4 := dgEditionOf(t, s, iss.ID, subs[0]), dgEditionOf(t, s, iss.ID, subs[1]),
		dgEditionOf(t, s, iss.ID, subs[2]), dgEditionOf(t, s, iss.ID, subs[3]), dgEditionOf(t, s, iss.ID, subs[4])
	if e0.ID != e2.ID || e0.ID != e4.ID {
		t.Fatalf("readers of [3 2 1] got editions %d, %d, %d; want one", e0.ID, e2.ID, e4.ID)
	}
	if e1.ID == e0.ID || e3.ID == e0.ID || e3.ID == e1.ID {
		t.Fatalf("distinct lists share an edition: %d %d %d", e0.ID, e1.ID, e3.ID)
	}
	if !slices.Equal(e0.ArticleIDs, []int64{3, 2, 1}) || e0.Readers != 3 {
		t.Fatalf("main edition = %+v, want [3 2 1] with 3 readers", e0)
	}
	if !slices.Equal(e3.ArticleIDs, []int64{1, 2, 3}) || e3.Readers != 1 {
		t.Fatalf("edition = %+v, want [1 2 3] with 1 reader", e3)
	}
	fin := dgFinish(t, s, iss.ID, at(time.Hour))
	if !slices.Equal(fin.ArticleIDs, []int64{3, 2, 1}) {
		t.Fatalf("issue's main edition = %v, want the one most readers got", fin.ArticleIDs)
	}
	if _, err := s.Edition(t.Context(), 9999); herald.ErrorCode(err) != herald.ENOTFOUND {
		t.Fatalf("Edition(9999): %v, want ENOTFOUND", err)
	}
}

func testFinishBuilding(t *testing.T, s DigestStore) {
	ctx := t.Context()
	subs := dgReaders(t, s, "daily", "a")
	empty := dgIssue(t, s, "daily", at(0))
	got := dgFinish(t, s, empty.ID, at(time.Minute))
	if got.Status != digest.IssueEmpty || got.Readers != 0 || !got.CompletedAt.Equal(at(time.Minute)) || len(got.ArticleIDs) != 0 {
		t.Fatalf("issue with no message finished as %+v, want empty, completed at %v", got, at(time.Minute))
	}
	full := dgIssue(t, s, "daily", at(time.Hour))
	dgEnqueue(t, s, full.ID, dgMessages(full.ID, subs, 9, 8), at(time.Hour))
	got = dgFinish(t, s, full.ID, at(2*time.Hour))
	if got.Status != digest.IssueSending || got.Readers != 1 || !got.CompletedAt.IsZero() || !slices.Equal(got.ArticleIDs, []int64{9, 8}) {
		t.Fatalf("issue with a message finished as %+v, want sending, 1 reader, [9 8]", got)
	}
	if again := dgFinish(t, s, full.ID, at(3*time.Hour)); again.Status != digest.IssueSending || again.Readers != 1 {
		t.Fatalf("finishing twice gave %+v", again)
	}
	if _, err := s.FinishBuilding(ctx, 9999, at(0)); herald.ErrorCode(err) != herald.ENOTFOUND {
		t.Fatalf("FinishBuilding(9999): %v, want ENOTFOUND", err)
	}
}

func testClaimCarriesEdition(t *testing.T, s DigestStore) {
	subs := dgReaders(t, s, "daily", "a")
	iss := dgIssue(t, s, "daily", at(0))
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs, 4), at(0))
	// Readers who, after the issue was queued, left its newsletter or
	// paused: the claim says so, for the renderer to cancel them.
	changed := dgReaders(t, s, "daily", "left", "paused")
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, changed, 4), at(0))
	pause := at(72 * time.Hour)
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		left, err := tx.SubscriberByID(changed[0])
		if err != nil {
			return err
		}
		left.Newsletters = []string{"weekly"}
		if err := tx.UpdateSubscriber(left); err != nil {
			return err
		}
		paused, err := tx.SubscriberByID(changed[1])
		if err != nil {
			return err
		}
		paused.PausedUntil = pause
		return tx.UpdateSubscriber(paused)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A transactional message queued later still goes first.
	err = s.Update(t.Context(), func(tx subscribers.Tx) error {
		return tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: subs[0],
			MessageID: "welcome@test.example", CreatedAt: at(time.Minute)})
	})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := s.ClaimMessages(t.Context(), "w", at(time.Hour), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 4 || jobs[0].Kind != subscribers.KindWelcome || jobs[0].EditionID != 0 || jobs[0].IssueID != 0 || jobs[0].InNewsletter {
		t.Fatalf("claimed %+v, want the welcome first, with no issue", jobs)
	}
	j := jobs[1]
	if j.Kind != digest.KindDigest || j.IssueID != iss.ID || j.EditionID == 0 || j.SubscriberID != subs[0] ||
		j.MessageID != digest.MessageID(iss.ID, subs[0], "test.example") || j.Email != "a@readers.example" ||
		j.Name != "Reader a" || j.SubscriberStatus != string(subscribers.StatusActive) ||
		!j.CreatedAt.Equal(at(0)) || !j.InNewsletter || !j.PausedUntil.IsZero() {
		t.Fatalf("claimed digest job %+v", j)
	}
	if l := jobs[2]; l.SubscriberID != changed[0] || l.InNewsletter || !l.PausedUntil.IsZero() {
		t.Errorf("claimed the job of a reader who left the newsletter as %+v, want InNewsletter false", l)
	}
	if p := jobs[3]; p.SubscriberID != changed[1] || !p.InNewsletter || !p.PausedUntil.Equal(pause) {
		t.Errorf("claimed the job of a paused reader as %+v, want PausedUntil %v", p, pause)
	}
	ed, err := s.Edition(t.Context(), j.EditionID)
	if err != nil || !slices.Equal(ed.ArticleIDs, []int64{4}) {
		t.Fatalf("Edition(%d) = %+v, %v; want [4]", j.EditionID, ed, err)
	}
}

func testProgressAndSettle(t *testing.T, s DigestStore) {
	ctx := t.Context()
	subs := dgReaders(t, s, "daily", "sent", "failed", "bounced", "retry", "cancelled")
	iss := dgIssue(t, s, "daily", at(0))
	dgEnqueue(t, s, iss.ID, dgMessages(iss.ID, subs, 1), at(0))
	dgFinish(t, s, iss.ID, at(0))
	if p := dgProgress(t, s, iss.ID); p != (digest.Progress{Total: 5, Queued: 5}) {
		t.Fatalf("progress before sending = %+v", p)
	}
	jobs, err := s.ClaimMessages(ctx, "w", at(time.Minute), time.Minute, 100)
	if err != nil || len(jobs) != 5 {
		t.Fatalf("claimed %d, %v; want 5", len(jobs), err)
	}
	if p := dgProgress(t, s, iss.ID); p != (digest.Progress{Total: 5, Queued: 5}) {
		t.Fatalf("progress while sending = %+v, want sending counted as queued", p)
	}
	outcome := map[int64]delivery.Outcome{
		subs[0]: delivery.OutcomeSent, subs[1]: delivery.OutcomeFailed, subs[2]: delivery.OutcomeBounced,
		subs[3]: delivery.OutcomeRetry, subs[4]: delivery.OutcomeCancelled,
	}
	var results []delivery.Result
	for _, j := range jobs {
		results = append(results, delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: outcome[j.SubscriberID],
			At: at(time.Minute), NextAttemptAt: at(time.Hour), Error: "x"})
	}
	if err := s.SettleMessages(ctx, "w", results); err != nil {
		t.Fatal(err)
	}
	want := digest.Progress{Total: 5, Queued: 1, Sent: 1, Failed: 1, Bounced: 1, Cancelled: 1}
	if p := dgProgress(t, s, iss.ID); p != want {
		t.Fatalf("progress = %+v, want %+v", p, want)
	}
	if p := dgProgress(t, s, 9999); p != (digest.Progress{}) {
		t.Fatalf("progress of no issue = %+v, want zero", p)
	}

	// One message is still to retry: the issue is not sent yet.
	if err := s.SettleIssues(ctx, at(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := dgFind(t, s, iss.ID); got.Status != digest.IssueSending {
		t.Fatalf("issue with a message to retry is %q, want sending", got.Status)
	}
	Deliver(t, s, at(time.Hour), nil)
	// Issues still building, or empty, are left alone.
	building := dgIssue(t, s, "daily", at(time.Hour))
	if err := s.SettleIssues(ctx, at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := dgFind(t, s, iss.ID)
	if got.Status != digest.IssueSent || !got.CompletedAt.Equal(at(2*time.Hour)) {
		t.Fatalf("settled issue = %+v, want sent at %v", got, at(2*time.Hour))
	}
	if got := dgFind(t, s, building.ID); got.Status != digest.IssueBuilding {
		t.Fatalf("building issue became %q", got.Status)
	}
	if p := dgProgress(t, s, iss.ID); p.Sent != 2 || p.Queued != 0 {
		t.Fatalf("final progress = %+v", p)
	}
	// Finishing a sent issue again leaves it sent.
	if again := dgFinish(t, s, iss.ID, at(3*time.Hour)); again.Status != digest.IssueSent {
		t.Fatalf("FinishBuilding on a sent issue made it %q", again.Status)
	}
}

// SettleIssue settles the one issue it names (no other), once, as
// SettleIssues would: not while a message is queued or being sent, not an
// issue building, and a later settle of either kind keeps the first
// completion time.
func testSettleIssue(t *testing.T, s DigestStore) {
	ctx := t.Context()
	subsA := dgReaders(t, s, "daily", "a1", "a2")
	subsB := dgReaders(t, s, "daily", "b1")
	subsC := dgReaders(t, s, "daily", "c1")
	a := dgIssue(t, s, "daily", at(0))
	dgEnqueue(t, s, a.ID, dgMessages(a.ID, subsA, 1), at(0))
	dgFinish(t, s, a.ID, at(0))
	b := dgIssue(t, s, "daily", at(time.Second))
	dgEnqueue(t, s, b.ID, dgMessages(b.ID, subsB, 1), at(0))
	dgFinish(t, s, b.ID, at(0))
	c := dgIssue(t, s, "daily", at(2*time.Second))
	dgEnqueue(t, s, c.ID, dgMessages(c.ID, subsC, 1), at(0))
	dgFinish(t, s, c.ID, at(0))
	settle := func(id int64, now time.Time) *digest.Issue {
		t.Helper()
		iss, err := s.SettleIssue(ctx, id, now)
		if err != nil {
			t.Fatalf("SettleIssue(%d): %v", id, err)
		}
		if got := dgFind(t, s, id); got.Status != iss.Status || !got.CompletedAt.Equal(iss.CompletedAt) {
			t.Fatalf("SettleIssue(%d) returned %+v, the store holds %+v", id, iss, got)
		}
		return iss
	}

	if got := settle(a.ID, at(time.Minute)); got.Status != digest.IssueSending || !got.CompletedAt.IsZero() {
		t.Fatalf("issue with queued messages settled as %+v", got)
	}
	jobs, err := s.ClaimMessages(ctx, "w", at(time.Minute), time.Minute, 100)
	if err != nil || len(jobs) != 4 {
		t.Fatalf("claimed %d, %v; want 4", len(jobs), err)
	}
	if got := settle(a.ID, at(time.Minute)); got.Status != digest.IssueSending {
		t.Fatalf("issue with messages being sent settled as %+v", got)
	}
	var results []delivery.Result
	for _, j := range jobs {
		o := delivery.OutcomeSent
		switch j.SubscriberID {
		case subsA[1]:
			o = delivery.OutcomeFailed
		case subsB[0]:
			o = delivery.OutcomeRetry
		}
		results = append(results, delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: o,
			At: at(time.Minute), NextAttemptAt: at(time.Hour), Error: "x"})
	}
	if err := s.SettleMessages(ctx, "w", results); err != nil {
		t.Fatal(err)
	}

	got := settle(a.ID, at(2*time.Minute))
	if got.ID != a.ID || got.Status != digest.IssueSent || !got.CompletedAt.Equal(at(2*time.Minute)) || got.Subject != a.Subject {
		t.Fatalf("settled issue = %+v, want sent at %v", got, at(2*time.Minute))
	}
	if other := dgFind(t, s, b.ID); other.Status != digest.IssueSending {
		t.Fatalf("settling issue %d changed issue %d, with a message to retry, to %q", a.ID, b.ID, other.Status)
	}
	if other := dgFind(t, s, c.ID); other.Status != digest.IssueSending {
		t.Fatalf("settling issue %d settled issue %d too", a.ID, c.ID)
	}
	if again := settle(a.ID, at(3*time.Hour)); again.Status != digest.IssueSent || !again.CompletedAt.Equal(at(2*time.Minute)) {
		t.Fatalf("settled again = %+v, want still sent at %v", again, at(2*time.Minute))
	}
	if err := s.SettleIssues(ctx, at(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if after := dgFind(t, s, a.ID); !after.CompletedAt.Equal(at(2 * time.Minute)) {
		t.Fatalf("SettleIssues moved the completion time to %v", after.CompletedAt)
	}
	if after := dgFind(t, s, c.ID); after.Status != digest.IssueSent || !after.CompletedAt.Equal(at(4*time.Hour)) {
		t.Fatalf("issue %d after SettleIssues = %+v, want sent at %v", c.ID, after, at(4*time.Hour))
	}

	building := dgIssue(t, s, "daily", at(time.Hour))
	if got := settle(building.ID, at(5*time.Hour)); got.Status != digest.IssueBuilding {
		t.Fatalf("building issue settled as %q", got.Status)
	}
	if _, err := s.SettleIssue(ctx, 999999, at(5*time.Hour)); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("SettleIssue of no issue: %v, want ENOTFOUND", err)
	}
}
