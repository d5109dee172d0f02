package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"herald"
	"herald/subscribers"
)

// FeedbackStore is what the bounce and complaint contract suite needs from
// an engine: a Store whose Update passes a subscribers.FeedbackTx, and the
// read side of the bounce log. E is the engine's bounce log row.
type FeedbackStore[E any] interface {
	Store
	// SoftBounces returns a subscriber's soft bounce count and the time
	// of the last one (zero when none), or ENOTFOUND.
	SoftBounces(ctx context.Context, subscriberID int64) (int, time.Time, error)
	// FindFeedbackLog returns the newest limit rows of the bounce log,
	// newest first.
	FindFeedbackLog(ctx context.Context, limit int) ([]E, error)
}

// RunFeedback runs the contract suite of subscribers.FeedbackTx and the
// bounce log. open must return a new, migrated, empty store for each call,
// and arrange its own cleanup; entry returns the log fields of one row.
func RunFeedback[E any](t *testing.T, open func(t *testing.T) FeedbackStore[E], entry func(E) subscribers.FeedbackLog) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s FeedbackStore[E], entry func(E) subscribers.FeedbackLog)
	}{
		{"SubscriberByMessage", testFeedbackLookups[E]},
		{"SoftBounces", testFeedbackSoftBounces[E]},
		{"Log", testFeedbackLog[E]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t), entry)
		})
	}
}

// feedbackUpdate runs fn in a transaction of s as a subscribers.FeedbackTx;
// an engine whose Tx is not one fails the transaction. fn may run on
// another goroutine (SQLite's write loop): it reports by returning, or by
// t.Errorf, never by t.Fatal.
func feedbackUpdate(t *testing.T, s Store, fn func(tx subscribers.FeedbackTx) error) error {
	t.Helper()
	return s.Update(t.Context(), func(tx subscribers.Tx) error {
		ftx, ok := tx.(subscribers.FeedbackTx)
		if !ok {
			return fmt.Errorf("the Tx of Update (%T) is not a subscribers.FeedbackTx", tx)
		}
		return fn(ftx)
	})
}

// testFeedbackLookups: a report finds its reader by the Message-ID or the
// outbox id of the message it is about.
func testFeedbackLookups[E any](t *testing.T, s FeedbackStore[E], _ func(E) subscribers.FeedbackLog) {
	subs := create(t, s,
		newSubscriber("one@example.org", subscribers.StatusActive, "daily"),
		newSubscriber("two@example.org", subscribers.StatusActive, "daily"))
	update(t, s, func(tx subscribers.Tx) error {
		for i, sub := range subs {
			m := subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: sub.ID,
				MessageID: []string{"one.1@news.example", "two.1@news.example"}[i], CreatedAt: at(0)}
			if err := tx.Enqueue(m); err != nil {
				return err
			}
		}
		return nil
	})
	jobs, err := s.ClaimMessages(t.Context(), "w", at(time.Minute), time.Minute, 10)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("ClaimMessages = %d jobs, %v; want 2", len(jobs), err)
	}
	outbox := map[int64]int64{} // subscriber id: outbox id
	for _, j := range jobs {
		outbox[j.SubscriberID] = j.ID
	}

	var (
		byMessage, byOutbox    *subscribers.Subscriber
		missMessage, missOutbx error
	)
	err = feedbackUpdate(t, s, func(tx subscribers.FeedbackTx) error {
		var err error
		if byMessage, err = tx.SubscriberByMessageID("two.1@news.example"); err != nil {
			return err
		}
		if byOutbox, err = tx.SubscriberByOutboxID(outbox[subs[0].ID]); err != nil {
			return err
		}
		_, missMessage = tx.SubscriberByMessageID("three.1@news.example")
		_, missOutbx = tx.SubscriberByOutboxID(outbox[subs[0].ID] + outbox[subs[1].ID])
		// Misses leave the transaction usable.
		_, err = tx.SubscriberByID(subs[0].ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	equalSubscriber(t, byMessage, subs[1])
	equalSubscriber(t, byOutbox, subs[0])
	wantCode(t, missMessage, herald.ENOTFOUND)
	wantCode(t, missOutbx, herald.ENOTFOUND)
}

// testFeedbackSoftBounces: soft bounces are counted per reader within a
// window that starts again after a quiet spell; the last time never goes
// back.
func testFeedbackSoftBounces[E any](t *testing.T, s FeedbackStore[E], _ func(E) subscribers.FeedbackLog) {
	ctx := t.Context()
	subs := create(t, s,
		newSubscriber("full@example.org", subscribers.StatusActive, "daily"),
		newSubscriber("other@example.org", subscribers.StatusActive, "daily"))
	id := subs[0].ID
	if n, last, err := s.SoftBounces(ctx, id); err != nil || n != 0 || !last.IsZero() {
		t.Fatalf("SoftBounces of a new reader = %d, %v, %v; want 0, zero time", n, last, err)
	}
	const day = 24 * time.Hour
	const window = 10 * day
	steps := []struct {
		at   time.Duration
		want int
	}{
		{0, 1},
		{day, 2},
		{12 * time.Hour, 3}, // reported late: counted, the last time stays
		{day + window - time.Hour, 4},
		{3*day + 2*window, 1}, // after a quiet spell longer than the window
	}
	for _, st := range steps {
		var n int
		err := feedbackUpdate(t, s, func(tx subscribers.FeedbackTx) error {
			var err error
			n, err = tx.AddSoftBounce(id, at(st.at), at(st.at-window))
			return err
		})
		if err != nil || n != st.want {
			t.Fatalf("AddSoftBounce at +%v = %d, %v; want %d", st.at, n, err, st.want)
		}
	}
	n, last, err := s.SoftBounces(ctx, id)
	if want := at(3*day + 2*window); err != nil || n != 1 || !last.Equal(want) || last.Location() != time.UTC {
		t.Fatalf("SoftBounces = %d, %v, %v; want 1, %v UTC", n, last, err, want)
	}
	if n, _, err := s.SoftBounces(ctx, subs[1].ID); err != nil || n != 0 {
		t.Fatalf("SoftBounces of another reader = %d, %v; want 0", n, err)
	}
	err = feedbackUpdate(t, s, func(tx subscribers.FeedbackTx) error {
		_, err := tx.AddSoftBounce(id+1000, at(0), at(-window))
		return err
	})
	wantCode(t, err, herald.ENOTFOUND)
	_, _, err = s.SoftBounces(ctx, id+1000)
	wantCode(t, err, herald.ENOTFOUND)
}

// testFeedbackLog: the log keeps every report, newest first; a report id
// is logged once, and a skipped duplicate leaves the transaction usable; a
// rolled-back transaction logs nothing.
func testFeedbackLog[E any](t *testing.T, s FeedbackStore[E], entry func(E) subscribers.FeedbackLog) {
	ctx := t.Context()
	sub := create(t, s, newSubscriber("gone@example.org", subscribers.StatusActive, "daily"))[0]
	if got, err := s.FindFeedbackLog(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("FindFeedbackLog on an empty log = %d rows, %v", len(got), err)
	}
	hard := subscribers.FeedbackLog{At: at(-time.Hour), ReceivedAt: at(0), Kind: subscribers.FeedbackHard,
		Result: subscribers.FeedbackApplied, SubscriberID: sub.ID, Reason: "550 5.1.1 unknown user", Source: "ses", ReportID: "sns-1"}
	unmatched := subscribers.FeedbackLog{At: at(time.Minute), ReceivedAt: at(time.Minute), Kind: subscribers.FeedbackComplaint,
		Result: subscribers.FeedbackUnmatched, Reason: "abuse", Source: "import:arf.eml"}
	unparsed := subscribers.FeedbackLog{At: at(2 * time.Minute), ReceivedAt: at(2 * time.Minute), Kind: subscribers.FeedbackUnparsed,
		Result: subscribers.FeedbackNotParsed, Reason: "not a report", Source: "import:x.eml"}

	err := feedbackUpdate(t, s, func(tx subscribers.FeedbackTx) error {
		for i, l := range []subscribers.FeedbackLog{hard, hard, unmatched, unparsed} {
			added, err := tx.LogFeedback(l)
			if err != nil {
				return err
			}
			if want := i != 1; added != want {
				t.Errorf("LogFeedback #%d added = %v, want %v", i, added, want)
			}
		}
		return tx.AddEvent(subscribers.Event{SubscriberID: sub.ID, At: at(0), Kind: "bounce", Detail: "after a duplicate"})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another transaction: the report id is still taken, rows without one
	// never collide.
	err = feedbackUpdate(t, s, func(tx subscribers.FeedbackTx) error {
		if added, err := tx.LogFeedback(hard); err != nil || added {
			t.Errorf("LogFeedback of a logged report = %v, %v; want false", added, err)
		}
		if added, err := tx.LogFeedback(unparsed); err != nil || !added {
			t.Errorf("LogFeedback of a second report without id = %v, %v; want true", added, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	errRollback := errors.New("roll back")
	err = feedbackUpdate(t, s, func(tx subscribers.FeedbackTx) error {
		if _, err := tx.LogFeedback(subscribers.FeedbackLog{At: at(0), ReceivedAt: at(0), Kind: subscribers.FeedbackSoft,
			Result: subscribers.FeedbackUnmatched, ReportID: "rolled-back"}); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("Update = %v, want the rollback error", err)
	}

	rows, err := s.FindFeedbackLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []subscribers.FeedbackLog{unparsed, unparsed, unmatched, hard}
	if len(rows) != len(want) {
		t.Fatalf("FindFeedbackLog = %d rows, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		got := entry(r)
		if got.At.Location() != time.UTC || got.ReceivedAt.Location() != time.UTC {
			t.Errorf("row %d: times %v, %v not UTC", i, got.At, got.ReceivedAt)
		}
		if !got.At.Equal(want[i].At) || !got.ReceivedAt.Equal(want[i].ReceivedAt) {
			t.Errorf("row %d: at %v, received %v; want %v, %v", i, got.At, got.ReceivedAt, want[i].At, want[i].ReceivedAt)
		}
		got.At, got.ReceivedAt, want[i].At, want[i].ReceivedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if got != want[i] {
			t.Errorf("row %d\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	if rows, err := s.FindFeedbackLog(ctx, 1); err != nil || len(rows) != 1 {
		t.Fatalf("FindFeedbackLog(1) = %d rows, %v; want 1", len(rows), err)
	}
	if ev, err := s.SubscriberEvents(ctx, sub.ID); err != nil || len(ev) != 1 {
		t.Fatalf("events = %+v, %v; want the one written after a duplicate", ev, err)
	}
}
