package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"herald"
	"herald/delivery"
	"herald/subscribers"
)

// PrivacyStore is what the privacy contract suite needs from an engine: the
// privacy store, the outbox to deliver mail, and the delivery statistics
// that retention and erase write.
type PrivacyStore interface {
	subscribers.PrivacyStore
	delivery.Store
	// DeliveryStats returns the delivery statistics as day (YYYY-MM-DD) ->
	// "kind/status" -> count.
	DeliveryStats(ctx context.Context) (map[string]map[string]int, error)
}

// RunPrivacy runs the contract suite of subscribers.PrivacyStore. open must
// return a new, migrated, empty store for each call, and arrange its own
// cleanup.
func RunPrivacy(t *testing.T, open func(t *testing.T) PrivacyStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s PrivacyStore)
	}{
		{"Suppressions", testSuppressions},
		{"SuppressionsPaging", testSuppressionsPaging},
		{"SubscriberRecords", testSubscriberRecords},
		{"EraseSubscriber", testEraseSubscriber},
		{"EraseRollsBack", testEraseRollsBack},
		{"LatestEvent", testLatestEvent},
		{"EachConsent", testEachConsent},
		{"PurgePending", testPurgePending},
		{"AggregateMessages", testAggregateMessages},
		{"DeleteExpiredTokens", testDeleteExpiredTokens},
		{"Scrub", testScrub},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// privacy helpers

func pvHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func pvUpdate(t *testing.T, s PrivacyStore, fn func(tx subscribers.PrivacyTx) error) error {
	t.Helper()
	return s.Update(t.Context(), func(tx subscribers.Tx) error {
		ptx, ok := tx.(subscribers.PrivacyTx)
		if !ok {
			return fmt.Errorf("the store's Tx (%T) does not implement subscribers.PrivacyTx", tx)
		}
		return fn(ptx)
	})
}

// pvCreate inserts subscribers and returns them with their ids.
func pvCreate(t *testing.T, s PrivacyStore, subs ...*subscribers.Subscriber) []*subscribers.Subscriber {
	t.Helper()
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		for _, sub := range subs {
			if err := tx.CreateSubscriber(sub); err != nil {
				return fmt.Errorf("create %s: %w", sub.Email, err)
			}
		}
		return nil
	})
	return subs
}

func pvMustUpdate(t *testing.T, s PrivacyStore, fn func(tx subscribers.PrivacyTx) error) {
	t.Helper()
	if err := pvUpdate(t, s, fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// pvReader creates a subscriber with two consents (one confirmed), two
// events, a token of each purpose and two messages, one of them delivered
// at base()+1h; everything at base() unless said otherwise.
func pvReader(t *testing.T, s PrivacyStore, email string, status subscribers.Status) *subscribers.Subscriber {
	t.Helper()
	sub := &subscribers.Subscriber{Email: email, Name: "Name of " + email, Status: status, Newsletters: []string{"daily", "weekly"},
		CreatedAt: base(), UpdatedAt: base()}
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		if err := tx.CreateSubscriber(sub); err != nil {
			return err
		}
		for i, ip := range []string{"192.0.2.0", "198.51.100.0"} {
			c := &subscribers.Consent{SubscriberID: sub.ID, CreatedAt: at(time.Duration(i) * time.Minute), IP: ip,
				UserAgent: "agent", Source: "https://site.example/form", TextVersion: "v1", Newsletters: []string{"daily"}}
			if i == 1 {
				c.ConfirmedAt, c.ConfirmIP = at(time.Hour), "203.0.113.0"
			}
			if err := tx.AddConsent(c); err != nil {
				return err
			}
		}
		for _, kind := range []string{subscribers.EventSignup, subscribers.EventConfirm} {
			if err := tx.AddEvent(subscribers.Event{SubscriberID: sub.ID, At: base(), Kind: kind, Detail: "d"}); err != nil {
				return err
			}
		}
		for _, p := range []subscribers.Purpose{subscribers.PurposeConfirm, subscribers.PurposeDataExport} {
			if err := tx.CreateToken(subscribers.Token{Hash: pvHash(email + string(p)), SubscriberID: sub.ID, Purpose: p,
				CreatedAt: base(), ExpiresAt: at(48 * time.Hour)}); err != nil {
				return err
			}
		}
		for i, kind := range []string{subscribers.KindConfirmation, subscribers.KindWelcome} {
			if err := tx.Enqueue(subscribers.OutboxMessage{Kind: kind, SubscriberID: sub.ID,
				MessageID: fmt.Sprintf("%d.%s@test.example", i, email), CreatedAt: base()}); err != nil {
				return err
			}
		}
		return nil
	})
	// Deliver the first message only.
	jobs, err := s.ClaimMessages(t.Context(), "pv", at(time.Hour), time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var results []delivery.Result
	for _, j := range jobs {
		if j.SubscriberID == sub.ID && j.Kind == subscribers.KindConfirmation {
			results = append(results, delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: delivery.OutcomeSent, At: at(time.Hour)})
		} else {
			results = append(results, delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: delivery.OutcomeRelease, At: at(time.Hour), NextAttemptAt: base()})
		}
	}
	if err := s.SettleMessages(t.Context(), "pv", results); err != nil {
		t.Fatal(err)
	}
	return sub
}

func testSuppressions(t *testing.T, s PrivacyStore) {
	h := pvHash("a@example.org")
	var added bool
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		var err error
		added, err = tx.AddSuppression(subscribers.Suppression{Hash: h, Reason: "erased", CreatedAt: base()})
		return err
	})
	if !added {
		t.Fatal("AddSuppression of a new hash reported not added")
	}
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		again, err := tx.AddSuppression(subscribers.Suppression{Hash: h, Reason: "other", CreatedAt: at(time.Hour)})
		if err != nil || again {
			return fmt.Errorf("second AddSuppression = %v, %v; want false, nil", again, err)
		}
		if ok, err := tx.Suppressed(h); err != nil || !ok {
			return fmt.Errorf("suppressed = %v, %v", ok, err)
		}
		if ok, err := tx.Suppressed(pvHash("b@example.org")); err != nil || ok {
			return fmt.Errorf("suppressed(unlisted) = %v, %v", ok, err)
		}
		got, err := tx.SuppressionByHash(h)
		if err != nil || got.Reason != "erased" || !got.CreatedAt.Equal(base()) {
			return fmt.Errorf("suppression by hash = %+v, %v; want the first entry", got, err)
		}
		_, err = tx.SuppressionByHash(pvHash("b@example.org"))
		if !herald.IsCode(err, herald.ENOTFOUND) {
			return fmt.Errorf("suppression by hash (unlisted) = %v, want ENOTFOUND", err)
		}
		return nil
	})
	got, err := s.FindSuppression(t.Context(), h)
	if err != nil || !bytes.Equal(got.Hash, h) || got.Reason != "erased" || !got.CreatedAt.Equal(base()) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("FindSuppression = %+v, %v", got, err)
	}
	_, err = s.FindSuppression(t.Context(), pvHash("b@example.org"))
	wantCode(t, err, herald.ENOTFOUND)

	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error { return tx.DeleteSuppression(h) })
	err = pvUpdate(t, s, func(tx subscribers.PrivacyTx) error { return tx.DeleteSuppression(h) })
	wantCode(t, err, herald.ENOTFOUND)
	_, err = s.FindSuppression(t.Context(), h)
	wantCode(t, err, herald.ENOTFOUND)
}

func testSuppressionsPaging(t *testing.T, s PrivacyStore) {
	var want [][]byte
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		for i := range 7 {
			h := pvHash(fmt.Sprintf("%d@example.org", i))
			want = append(want, h)
			if _, err := tx.AddSuppression(subscribers.Suppression{Hash: h, Reason: "r", CreatedAt: base()}); err != nil {
				return err
			}
		}
		return nil
	})
	slices.SortFunc(want, bytes.Compare)
	var got [][]byte
	var after []byte
	for page := 0; ; page++ {
		list, err := s.FindSuppressions(t.Context(), after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			got = append(got, e.Hash)
		}
		if len(list) < 3 {
			break
		}
		after = list[len(list)-1].Hash
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("paged hashes out of order or incomplete: got %d, want %d", len(got), len(want))
	}
}

func testSubscriberRecords(t *testing.T, s PrivacyStore) {
	pvReader(t, s, "other@example.org", subscribers.StatusActive)
	sub := pvReader(t, s, "ana@example.org", subscribers.StatusActive)
	rec, err := s.FindSubscriberRecords(t.Context(), sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Subscriber.Email != "ana@example.org" || !slices.Equal(rec.Subscriber.Newsletters, []string{"daily", "weekly"}) {
		t.Fatalf("subscriber = %+v", rec.Subscriber)
	}
	if len(rec.Consents) != 2 || rec.Consents[0].IP != "192.0.2.0" || rec.Consents[1].ConfirmIP != "203.0.113.0" ||
		!rec.Consents[1].ConfirmedAt.Equal(at(time.Hour)) || !rec.Consents[0].ConfirmedAt.IsZero() ||
		rec.Consents[0].UserAgent != "agent" || rec.Consents[0].TextVersion != "v1" || !slices.Equal(rec.Consents[0].Newsletters, []string{"daily"}) {
		t.Fatalf("consents = %+v", rec.Consents)
	}
	if len(rec.Events) != 2 || rec.Events[0].Kind != subscribers.EventSignup || rec.Events[1].Kind != subscribers.EventConfirm {
		t.Fatalf("events = %+v", rec.Events)
	}
	if len(rec.Tokens) != 2 {
		t.Fatalf("tokens = %+v", rec.Tokens)
	}
	var purposes []string
	for _, tok := range rec.Tokens {
		purposes = append(purposes, string(tok.Purpose))
		if tok.SubscriberID != sub.ID || !tok.ExpiresAt.Equal(at(48*time.Hour)) {
			t.Fatalf("token = %+v", tok)
		}
	}
	slices.Sort(purposes)
	if !slices.Equal(purposes, []string{"confirm", "data_export"}) {
		t.Fatalf("token purposes = %v", purposes)
	}
	if len(rec.Messages) != 2 {
		t.Fatalf("messages = %+v", rec.Messages)
	}
	m := rec.Messages[0]
	if m.Kind != subscribers.KindConfirmation || m.Status != "sent" || m.Attempts != 1 || !m.SentAt.Equal(at(time.Hour)) ||
		m.MessageID != "0.ana@example.org@test.example" || m.IssueID != 0 || !m.CreatedAt.Equal(base()) {
		t.Fatalf("first message = %+v", m)
	}
	if m := rec.Messages[1]; m.Status != "queued" || !m.SentAt.IsZero() {
		t.Fatalf("second message = %+v", m)
	}
	_, err = s.FindSubscriberRecords(t.Context(), sub.ID+100)
	wantCode(t, err, herald.ENOTFOUND)
}

func testEraseSubscriber(t *testing.T, s PrivacyStore) {
	keep := pvReader(t, s, "keep@example.org", subscribers.StatusActive)
	gone := pvReader(t, s, "gone@example.org", subscribers.StatusActive)
	before, err := s.DeliveryStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error { return tx.EraseSubscriber(gone.ID) })
	_, err = s.FindSubscriberRecords(t.Context(), gone.ID)
	wantCode(t, err, herald.ENOTFOUND)
	rec, err := s.FindSubscriberRecords(t.Context(), keep.ID)
	if err != nil || len(rec.Consents) != 2 || len(rec.Events) != 2 || len(rec.Tokens) != 2 || len(rec.Messages) != 2 {
		t.Fatalf("the other reader's records = %+v, %v", rec, err)
	}
	// The erased reader's tokens no longer resolve, and their delivered
	// message is counted in the statistics.
	err = pvUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		_, err := tx.TokenByHash(pvHash("gone@example.org" + string(subscribers.PurposeConfirm)))
		return err
	})
	wantCode(t, err, herald.ENOTFOUND)
	after, err := s.DeliveryStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	day := at(time.Hour).Format(time.DateOnly)
	if after[day]["confirmation/sent"] != before[day]["confirmation/sent"]+1 {
		t.Fatalf("delivery stats = %v, want one more confirmation/sent on %s than %v", after, day, before)
	}
	// Nothing of theirs is claimed any more.
	jobs, err := s.ClaimMessages(t.Context(), "pv2", at(2*time.Hour), time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.SubscriberID == gone.ID {
			t.Fatalf("a message of the erased reader was claimed: %+v", j)
		}
	}
	err = pvUpdate(t, s, func(tx subscribers.PrivacyTx) error { return tx.EraseSubscriber(gone.ID) })
	wantCode(t, err, herald.ENOTFOUND)
	// The address is free again (for an operator who lifts the
	// suppression).
	pvCreate(t, s, newSubscriber("gone@example.org", subscribers.StatusPending))
}

func testEraseRollsBack(t *testing.T, s PrivacyStore) {
	sub := pvReader(t, s, "stay@example.org", subscribers.StatusActive)
	boom := errors.New("boom")
	err := pvUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		if _, err := tx.AddSuppression(subscribers.Suppression{Hash: pvHash("stay@example.org"), Reason: "erased", CreatedAt: base()}); err != nil {
			return err
		}
		if err := tx.EraseSubscriber(sub.ID); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if _, err := s.FindSubscriberRecords(t.Context(), sub.ID); err != nil {
		t.Fatalf("after a rolled back erase: %v", err)
	}
	_, err = s.FindSuppression(t.Context(), pvHash("stay@example.org"))
	wantCode(t, err, herald.ENOTFOUND)
}

func testLatestEvent(t *testing.T, s PrivacyStore) {
	sub := pvCreate(t, s, newSubscriber("e@example.org", subscribers.StatusActive))[0]
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		for i, kind := range []string{"data_request", "confirm", "data_request", "pause"} {
			if err := tx.AddEvent(subscribers.Event{SubscriberID: sub.ID, At: at(time.Duration(i) * time.Hour), Kind: kind, Detail: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		e, err := tx.LatestEvent(sub.ID, "data_request")
		if err != nil || e.Detail != "2" || !e.At.Equal(at(2*time.Hour)) || e.SubscriberID != sub.ID {
			return fmt.Errorf("latest event = %+v, %v", e, err)
		}
		if _, err := tx.LatestEvent(sub.ID, "resume"); !herald.IsCode(err, herald.ENOTFOUND) {
			return fmt.Errorf("latest event of a kind never logged = %v, want ENOTFOUND", err)
		}
		return nil
	})
}

func testEachConsent(t *testing.T, s PrivacyStore) {
	a := pvReader(t, s, "a@example.org", subscribers.StatusActive)
	b := pvReader(t, s, "b@example.org", subscribers.StatusPending)
	type row struct {
		email string
		sub   int64
		ip    string
	}
	var got []row
	err := s.EachConsent(t.Context(), func(email string, c *subscribers.Consent) error {
		got = append(got, row{email, c.SubscriberID, c.IP})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"a@example.org", a.ID, "192.0.2.0"}, {"a@example.org", a.ID, "198.51.100.0"},
		{"b@example.org", b.ID, "192.0.2.0"}, {"b@example.org", b.ID, "198.51.100.0"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("EachConsent = %v, want %v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err = s.EachConsent(t.Context(), func(string, *subscribers.Consent) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("EachConsent stopping = %v after %d calls, want stop after 1", err, n)
	}
}

func testPurgePending(t *testing.T, s PrivacyStore) {
	old := pvReader(t, s, "old@example.org", subscribers.StatusPending)
	oldActive := pvReader(t, s, "active@example.org", subscribers.StatusActive)
	recent := newSubscriber("recent@example.org", subscribers.StatusPending)
	recent.UpdatedAt = at(10 * 24 * time.Hour)
	pvCreate(t, s, recent)
	var more []*subscribers.Subscriber
	for i := range 3 {
		more = append(more, newSubscriber(fmt.Sprintf("p%d@example.org", i), subscribers.StatusPending))
	}
	pvCreate(t, s, more...)

	// The store returns the addresses it purged, at most limit at a time,
	// each once: the old pending signups, in some order (they changed at
	// the same moment), and neither the active reader nor the recent one.
	cutoff := at(24 * time.Hour)
	first, err := s.PurgePending(t.Context(), cutoff, 2)
	if err != nil || len(first) != 2 {
		t.Fatalf("PurgePending(limit 2) = %q, %v; want 2 addresses", first, err)
	}
	rest, err := s.PurgePending(t.Context(), cutoff, 100)
	if err != nil || len(rest) != 2 {
		t.Fatalf("PurgePending = %q, %v; want the 2 left", rest, err)
	}
	got := slices.Sorted(slices.Values(append(first, rest...)))
	if want := []string{"old@example.org", "p0@example.org", "p1@example.org", "p2@example.org"}; !slices.Equal(got, want) {
		t.Fatalf("purged addresses = %q, want %q", got, want)
	}
	if got, err := s.PurgePending(t.Context(), cutoff, 100); err != nil || len(got) != 0 {
		t.Fatalf("third PurgePending = %q, %v; want none", got, err)
	}
	if got, err := s.PurgePending(t.Context(), at(30*24*time.Hour), 0); err != nil || len(got) != 0 {
		t.Fatalf("PurgePending(limit 0) = %q, %v; want none", got, err)
	}
	_, err = s.FindSubscriberRecords(t.Context(), old.ID)
	wantCode(t, err, herald.ENOTFOUND)
	for _, id := range []int64{oldActive.ID, recent.ID} {
		if _, err := s.FindSubscriberRecords(t.Context(), id); err != nil {
			t.Fatalf("subscriber %d was purged: %v", id, err)
		}
	}
	// Purged signups are not suppressed.
	list, err := s.FindSuppressions(t.Context(), nil, 10)
	if err != nil || len(list) != 0 {
		t.Fatalf("suppressions = %v, %v; want none", list, err)
	}
}

func testAggregateMessages(t *testing.T, s PrivacyStore) {
	sub := pvCreate(t, s, newSubscriber("m@example.org", subscribers.StatusActive))[0]
	// Six messages: sent on day 1, day 2 and day 3, failed and cancelled
	// on day 1, one still queued from day 0.
	day := func(d int) time.Time { return base().Add(time.Duration(d) * 24 * time.Hour) }
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		for i := range 6 {
			if err := tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: sub.ID,
				MessageID: fmt.Sprintf("agg.%d@test.example", i), CreatedAt: day(0)}); err != nil {
				return err
			}
		}
		return nil
	})
	settle := func(when time.Time, outcomes ...delivery.Outcome) {
		t.Helper()
		jobs, err := s.ClaimMessages(t.Context(), "agg", when, time.Minute, len(outcomes))
		if err != nil || len(jobs) != len(outcomes) {
			t.Fatalf("claim = %d jobs, %v; want %d", len(jobs), err, len(outcomes))
		}
		var rs []delivery.Result
		for i, j := range jobs {
			rs = append(rs, delivery.Result{ID: j.ID, SubscriberID: sub.ID, Outcome: outcomes[i], At: when, Error: "e"})
		}
		if err := s.SettleMessages(t.Context(), "agg", rs); err != nil {
			t.Fatal(err)
		}
	}
	settle(day(1), delivery.OutcomeSent, delivery.OutcomeFailed, delivery.OutcomeCancelled)
	settle(day(2), delivery.OutcomeSent)
	settle(day(3), delivery.OutcomeSent)

	n, err := s.AggregateMessages(t.Context(), day(2).Add(time.Hour), 2)
	if err != nil || n != 2 {
		t.Fatalf("AggregateMessages(limit 2) = %d, %v", n, err)
	}
	n, err = s.AggregateMessages(t.Context(), day(2).Add(time.Hour), 100)
	if err != nil || n != 2 {
		t.Fatalf("AggregateMessages = %d, %v; want the 2 left before the cutoff", n, err)
	}
	if n, err := s.AggregateMessages(t.Context(), day(2).Add(time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("third AggregateMessages = %d, %v", n, err)
	}
	stats, err := s.DeliveryStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int{
		day(1).Format(time.DateOnly): {"welcome/sent": 1, "welcome/failed": 1, "welcome/cancelled": 1},
		day(2).Format(time.DateOnly): {"welcome/sent": 1},
	}
	if fmt.Sprint(stats) != fmt.Sprint(want) {
		t.Fatalf("DeliveryStats = %v, want %v", stats, want)
	}
	rec, err := s.FindSubscriberRecords(t.Context(), sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, m := range rec.Messages {
		left = append(left, m.Status)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"queued", "sent"}) {
		t.Fatalf("messages left = %v, want the queued one and day 3's", left)
	}
}

func testDeleteExpiredTokens(t *testing.T, s PrivacyStore) {
	sub := pvCreate(t, s, newSubscriber("t@example.org", subscribers.StatusActive))[0]
	pvMustUpdate(t, s, func(tx subscribers.PrivacyTx) error {
		for i := range 4 {
			if err := tx.CreateToken(subscribers.Token{Hash: pvHash(fmt.Sprint("tok", i)), SubscriberID: sub.ID,
				Purpose: subscribers.PurposeConfirm, CreatedAt: base(), ExpiresAt: at(time.Duration(i) * time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	n, err := s.DeleteExpiredTokens(t.Context(), at(2*time.Hour), 1)
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpiredTokens(limit 1) = %d, %v", n, err)
	}
	n, err = s.DeleteExpiredTokens(t.Context(), at(2*time.Hour), 100)
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpiredTokens = %d, %v; want 1 more (expiry before the cutoff only)", n, err)
	}
	rec, err := s.FindSubscriberRecords(t.Context(), sub.ID)
	if err != nil || len(rec.Tokens) != 2 {
		t.Fatalf("tokens left = %+v, %v; want 2", rec, err)
	}
}

func testScrub(t *testing.T, s PrivacyStore) {
	pvReader(t, s, "s@example.org", subscribers.StatusActive)
	for range 2 {
		if err := s.Scrub(t.Context()); err != nil {
			t.Fatalf("Scrub: %v", err)
		}
	}
}
