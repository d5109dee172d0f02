// Package storetest is the contract suite every Herald storage engine runs:
// the same tests, on SQLite and on PostgreSQL, against a real database.
//
// An engine's test calls Run with a function that opens a fresh, migrated,
// empty store for one subtest:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store { return openTemp(t) })
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"herald"
	"herald/delivery"
	"herald/subscribers"
)

// Store is what an engine provides: the domains' store interfaces and the
// few read methods shared by the admin side and this suite.
type Store interface {
	subscribers.Store
	delivery.Store
	// SubscriberEvents returns a subscriber's activity log, oldest first.
	SubscriberEvents(ctx context.Context, subscriberID int64) ([]subscribers.Event, error)
	// CountMessages returns how many outbox rows are in each status.
	CountMessages(ctx context.Context) (map[string]int, error)
}

// base is the suite's "now": every time is explicit, nothing sleeps.
func base() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// Run runs the contract suite. open must return a new, migrated, empty store
// for each call, and arrange its own cleanup (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"CreateFindUpdateSubscriber", testCreateFindUpdate},
		{"DuplicateEmailConflict", testDuplicateEmail},
		{"ConflictKeepsTx", testConflictKeepsTx},
		{"NotFound", testNotFound},
		{"FilterQueryPrefix", testFilterQuery},
		{"FilterStatusNewsletter", testFilterStatusNewsletter},
		{"CursorPaging", testCursorPaging},
		{"EachSubscriber", testEachSubscriber},
		{"Consent", testConsent},
		{"Events", testEvents},
		{"Tokens", testTokens},
		{"FindToken", testFindToken},
		{"Secret", testSecret},
		{"UpdateRollback", testUpdateRollback},
		{"Enqueue", testEnqueue},
		{"ClaimOrder", testClaimOrder},
		{"ClaimLeaseExpiry", testClaimLeaseExpiry},
		{"ClaimConcurrent", testClaimConcurrent},
		{"ClaimShareTwoPriorities", testClaimShareTwoPriorities},
		{"ClaimShareFill", testClaimShareFill},
		{"ClaimShareThreePriorities", testClaimShareThreePriorities},
		{"ClaimShareExpired", testClaimShareExpired},
		{"ClaimShareDrain", testClaimShareDrain},
		{"SettleOnlyOwner", testSettleOnlyOwner},
		{"SettleOutcomes", testSettleOutcomes},
		{"SettleRelease", testSettleRelease},
		{"SettleBounced", testSettleBounced},
		{"PausedUntil", testPausedUntil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// helpers

func at(d time.Duration) time.Time { return base().Add(d) }

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := herald.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func update(t *testing.T, s Store, fn func(tx subscribers.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func newSubscriber(email string, status subscribers.Status, newsletters ...string) *subscribers.Subscriber {
	return &subscribers.Subscriber{
		Email: email, Name: "", Status: status, Newsletters: newsletters,
		CreatedAt: base(), UpdatedAt: base(),
	}
}

// create inserts subscribers and returns them with their ids.
func create(t *testing.T, s Store, subs ...*subscribers.Subscriber) []*subscribers.Subscriber {
	t.Helper()
	update(t, s, func(tx subscribers.Tx) error {
		for _, sub := range subs {
			if err := tx.CreateSubscriber(sub); err != nil {
				return fmt.Errorf("create %s: %w", sub.Email, err)
			}
		}
		return nil
	})
	return subs
}

func equalSubscriber(t *testing.T, got, want *subscribers.Subscriber) {
	t.Helper()
	if got.ID != want.ID || got.Email != want.Email || got.Name != want.Name || got.Status != want.Status ||
		!slices.Equal(got.Newsletters, want.Newsletters) ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) ||
		!got.ConfirmedAt.Equal(want.ConfirmedAt) || !got.ConfirmSentAt.Equal(want.ConfirmSentAt) {
		t.Fatalf("subscriber\n got %+v\nwant %+v", got, want)
	}
	for _, tm := range []time.Time{got.CreatedAt, got.UpdatedAt, got.ConfirmedAt, got.ConfirmSentAt} {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Fatalf("time %v is not UTC", tm)
		}
	}
}

func ids(subs []*subscribers.Subscriber) []int64 {
	out := make([]int64, len(subs))
	for i, s := range subs {
		out[i] = s.ID
	}
	return out
}

func jobIDs(jobs []delivery.Job) []int64 {
	out := make([]int64, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func find(t *testing.T, s Store, f subscribers.Filter) []int64 {
	t.Helper()
	got, err := s.FindSubscribers(t.Context(), f)
	if err != nil {
		t.Fatalf("FindSubscribers(%+v): %v", f, err)
	}
	return ids(got)
}

func counts(t *testing.T, s Store) map[string]int {
	t.Helper()
	c, err := s.CountMessages(t.Context())
	if err != nil {
		t.Fatalf("CountMessages: %v", err)
	}
	return c
}

func wantCounts(t *testing.T, s Store, want map[string]int) {
	t.Helper()
	got := counts(t, s)
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("message counts = %v, want %v", got, want)
		}
	}
	for k, v := range got {
		if v != 0 && want[k] == 0 {
			t.Fatalf("message counts = %v, want %v", got, want)
		}
	}
}

// enqueue creates one active subscriber and queues n messages for it with the
// given priorities (cycled), created at base(); it returns the subscriber.
func enqueue(t *testing.T, s Store, email string, n int, priorities ...int) *subscribers.Subscriber {
	t.Helper()
	if len(priorities) == 0 {
		priorities = []int{0}
	}
	sub := newSubscriber(email, subscribers.StatusActive)
	sub.Name = "Reader " + email
	update(t, s, func(tx subscribers.Tx) error {
		if err := tx.CreateSubscriber(sub); err != nil {
			return err
		}
		for i := range n {
			err := tx.Enqueue(subscribers.OutboxMessage{
				Kind: subscribers.KindWelcome, SubscriberID: sub.ID,
				MessageID: fmt.Sprintf("%d.%s@test.example", i, email),
				Priority:  priorities[i%len(priorities)], CreatedAt: base(),
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return sub
}

func claim(t *testing.T, s Store, owner string, now time.Time, limit int) []delivery.Job {
	t.Helper()
	jobs, err := s.ClaimMessages(t.Context(), owner, now, time.Minute, limit)
	if err != nil {
		t.Fatalf("ClaimMessages(%s): %v", owner, err)
	}
	return jobs
}

func settle(t *testing.T, s Store, owner string, results ...delivery.Result) {
	t.Helper()
	if err := s.SettleMessages(t.Context(), owner, results); err != nil {
		t.Fatalf("SettleMessages(%s): %v", owner, err)
	}
}

// subscribers

func testCreateFindUpdate(t *testing.T, s Store) {
	ctx := t.Context()
	sub := &subscribers.Subscriber{
		Email: "Ada.Lovelace@example.org", Name: "Ada", Status: subscribers.StatusPending,
		Newsletters: []string{"weekly", "daily", "daily"}, CreatedAt: base(), UpdatedAt: base(),
		ConfirmSentAt: at(time.Second),
	}
	create(t, s, sub)
	if sub.ID == 0 {
		t.Fatal("CreateSubscriber did not set ID")
	}
	want := *sub
	want.Newsletters = []string{"daily", "weekly"} // sorted, without duplicates

	got, err := s.FindSubscriberByID(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalSubscriber(t, got, &want)

	update(t, s, func(tx subscribers.Tx) error {
		got, err := tx.SubscriberByEmail("Ada.Lovelace@example.org")
		if err != nil {
			return err
		}
		equalSubscriber(t, got, &want)
		if got, err = tx.SubscriberByID(sub.ID); err != nil {
			return err
		}
		equalSubscriber(t, got, &want)

		got.Name = "Ada L."
		got.Status = subscribers.StatusActive
		got.Newsletters = []string{"monthly", "daily"}
		got.ConfirmedAt = at(time.Hour)
		got.UpdatedAt = at(time.Hour)
		got.ConfirmSentAt = time.Time{}
		return tx.UpdateSubscriber(got)
	})
	want.Name, want.Status = "Ada L.", subscribers.StatusActive
	want.Newsletters = []string{"daily", "monthly"}
	want.ConfirmedAt, want.UpdatedAt, want.ConfirmSentAt = at(time.Hour), at(time.Hour), time.Time{}
	got, err = s.FindSubscriberByID(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalSubscriber(t, got, &want)

	// Dropping every newsletter leaves none.
	update(t, s, func(tx subscribers.Tx) error {
		got.Newsletters = nil
		return tx.UpdateSubscriber(got)
	})
	if got, err = s.FindSubscriberByID(ctx, sub.ID); err != nil {
		t.Fatal(err)
	} else if len(got.Newsletters) != 0 {
		t.Fatalf("newsletters = %v, want none", got.Newsletters)
	}

	// A subscriber with no newsletters at all.
	bare := create(t, s, newSubscriber("bare@example.org", subscribers.StatusActive))[0]
	if got, err = s.FindSubscriberByID(ctx, bare.ID); err != nil {
		t.Fatal(err)
	}
	equalSubscriber(t, got, bare)
}

// Addresses are unique ignoring case: NormalizeAddress lower-cases only the
// domain, and no reader should get two copies for "Ada@" and "ada@".
func testDuplicateEmail(t *testing.T, s Store) {
	sub := create(t, s, newSubscriber("Dup@example.org", subscribers.StatusActive))[0]
	for _, email := range []string{"Dup@example.org", "dup@example.org", "DUP@example.org"} {
		err := s.Update(t.Context(), func(tx subscribers.Tx) error {
			return tx.CreateSubscriber(newSubscriber(email, subscribers.StatusPending))
		})
		wantCode(t, err, herald.ECONFLICT)
		update(t, s, func(tx subscribers.Tx) error {
			got, err := tx.SubscriberByEmail(email)
			if err != nil {
				return err
			}
			if got.ID != sub.ID || got.Email != "Dup@example.org" {
				t.Fatalf("SubscriberByEmail(%q) = %+v, want the address as stored", email, got)
			}
			return nil
		})
	}
}

func testNotFound(t *testing.T, s Store) {
	ctx := t.Context()
	_, err := s.FindSubscriberByID(ctx, 424242)
	wantCode(t, err, herald.ENOTFOUND)

	tests := []struct {
		name string
		fn   func(tx subscribers.Tx) error
	}{
		{"SubscriberByEmail", func(tx subscribers.Tx) error {
			_, err := tx.SubscriberByEmail("nobody@example.org")
			return err
		}},
		{"SubscriberByID", func(tx subscribers.Tx) error { _, err := tx.SubscriberByID(424242); return err }},
		{"UpdateSubscriber", func(tx subscribers.Tx) error {
			s := newSubscriber("nobody@example.org", subscribers.StatusActive)
			s.ID = 424242
			return tx.UpdateSubscriber(s)
		}},
		{"LatestConsent", func(tx subscribers.Tx) error { _, err := tx.LatestConsent(424242); return err }},
		{"TokenByHash", func(tx subscribers.Tx) error { _, err := tx.TokenByHash([]byte("nope")); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, s.Update(ctx, tt.fn), herald.ENOTFOUND)
		})
	}
}

func testFilterQuery(t *testing.T, s Store) {
	subs := create(t, s,
		&subscribers.Subscriber{Email: "alice@example.org", Name: "Zed", Status: subscribers.StatusActive, CreatedAt: base(), UpdatedAt: base()},
		&subscribers.Subscriber{Email: "bob@example.org", Name: "Alicia Keys", Status: subscribers.StatusActive, CreatedAt: base(), UpdatedAt: base()},
		&subscribers.Subscriber{Email: "100%@example.org", Name: "", Status: subscribers.StatusActive, CreatedAt: base(), UpdatedAt: base()},
		&subscribers.Subscriber{Email: "1000@example.org", Name: "", Status: subscribers.StatusActive, CreatedAt: base(), UpdatedAt: base()},
		&subscribers.Subscriber{Email: "a_b@example.org", Name: "", Status: subscribers.StatusActive, CreatedAt: base(), UpdatedAt: base()},
		&subscribers.Subscriber{Email: "axb@example.org", Name: `back\slash`, Status: subscribers.StatusActive, CreatedAt: base(), UpdatedAt: base()},
		&subscribers.Subscriber{Email: "carol@example.org", Name: "carol", Status: subscribers.StatusActive, CreatedAt: base(), UpdatedAt: base()},
	)
	alice, bob, pct, thousand, under, axb, carol := subs[0].ID, subs[1].ID, subs[2].ID, subs[3].ID, subs[4].ID, subs[5].ID, subs[6].ID
	tests := []struct {
		query string
		want  []int64
	}{
		{"", []int64{alice, bob, pct, thousand, under, axb, carol}},
		{"ali", []int64{alice, bob}},           // address of one, name of the other
		{"ALI", []int64{alice, bob}},           // case-insensitive
		{"alicia k", []int64{bob}},             // names have spaces
		{"lice", nil},                          // a prefix, not a substring
		{"100%", []int64{pct}},                 // % is literal
		{"10", []int64{pct, thousand}},         //
		{"a_", []int64{under}},                 // _ is literal
		{"a", []int64{alice, bob, under, axb}}, // Alicia, a_b, axb
		{`back\`, []int64{axb}},                // backslash is literal
		{`\`, nil},                             //
		{"CAROL@EXAMPLE.ORG", []int64{carol}},  //
		{"%", nil},
		{"_", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got := find(t, s, subscribers.Filter{Query: tt.query})
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Query %q: got ids %v, want %v", tt.query, got, tt.want)
			}
		})
	}
}

func testFilterStatusNewsletter(t *testing.T, s Store) {
	subs := create(t, s,
		newSubscriber("a@example.org", subscribers.StatusActive, "daily"),
		newSubscriber("b@example.org", subscribers.StatusPending, "daily", "weekly"),
		newSubscriber("c@example.org", subscribers.StatusActive, "weekly"),
		newSubscriber("d@example.org", subscribers.StatusBounced),
		newSubscriber("ab@example.org", subscribers.StatusActive, "weekly"),
	)
	a, b, c, d, ab := subs[0].ID, subs[1].ID, subs[2].ID, subs[3].ID, subs[4].ID
	tests := []struct {
		name string
		f    subscribers.Filter
		want []int64
	}{
		{"active", subscribers.Filter{Status: subscribers.StatusActive}, []int64{a, c, ab}},
		{"bounced", subscribers.Filter{Status: subscribers.StatusBounced}, []int64{d}},
		{"complained", subscribers.Filter{Status: subscribers.StatusComplained}, nil},
		{"daily", subscribers.Filter{Newsletter: "daily"}, []int64{a, b}},
		{"weekly", subscribers.Filter{Newsletter: "weekly"}, []int64{b, c, ab}},
		{"unknown newsletter", subscribers.Filter{Newsletter: "nope"}, nil},
		{"active weekly", subscribers.Filter{Status: subscribers.StatusActive, Newsletter: "weekly"}, []int64{c, ab}},
		{"query active weekly", subscribers.Filter{Query: "a", Status: subscribers.StatusActive, Newsletter: "weekly"}, []int64{ab}},
		{"limit", subscribers.Filter{Limit: 2}, []int64{a, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := find(t, s, tt.f); !slices.Equal(got, tt.want) {
				t.Fatalf("got ids %v, want %v", got, tt.want)
			}
		})
	}
	_, err := s.FindSubscribers(t.Context(), subscribers.Filter{Status: "nonsense"})
	wantCode(t, err, herald.EINVALID)
}

func testCursorPaging(t *testing.T, s Store) {
	var subs []*subscribers.Subscriber
	for i := range 120 {
		subs = append(subs, newSubscriber(fmt.Sprintf("reader%03d@example.org", i), subscribers.StatusActive))
	}
	create(t, s, subs...)
	want := ids(subs)

	// Default limit.
	if got := find(t, s, subscribers.Filter{}); len(got) != 50 {
		t.Fatalf("default page has %d rows, want 50", len(got))
	}
	// Pages of 7, by cursor, cover everything once, in order.
	var got []int64
	f := subscribers.Filter{Query: "reader", Limit: 7}
	for {
		page := find(t, s, f)
		if len(page) == 0 {
			break
		}
		if len(page) > 7 {
			t.Fatalf("page of %d rows, limit 7", len(page))
		}
		got = append(got, page...)
		f.AfterID = page[len(page)-1]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged ids %v, want %v", got, want)
	}
}

func testEachSubscriber(t *testing.T, s Store) {
	var subs []*subscribers.Subscriber
	for i := range 30 {
		subs = append(subs, newSubscriber(fmt.Sprintf("each%02d@example.org", 29-i), subscribers.StatusActive, "daily"))
	}
	create(t, s, subs...)
	var got []int64
	err := s.EachSubscriber(t.Context(), func(sub *subscribers.Subscriber) error {
		if !slices.Equal(sub.Newsletters, []string{"daily"}) {
			return fmt.Errorf("subscriber %d newsletters %v", sub.ID, sub.Newsletters)
		}
		got = append(got, sub.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := ids(subs); !slices.Equal(got, want) {
		t.Fatalf("EachSubscriber ids %v, want %v", got, want)
	}

	// fn's error stops the walk and comes back.
	stop := errors.New("stop")
	n := 0
	err = s.EachSubscriber(t.Context(), func(*subscribers.Subscriber) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("EachSubscriber = %v after %d calls, want stop after 3", err, n)
	}
}

func testConsent(t *testing.T, s Store) {
	sub := create(t, s, newSubscriber("consent@example.org", subscribers.StatusPending, "daily"))[0]
	first := &subscribers.Consent{
		SubscriberID: sub.ID, CreatedAt: base(), IP: "192.0.2.1", UserAgent: "UA/1",
		Source: "https://example.org/", TextVersion: "v1", Newsletters: []string{"daily"},
	}
	second := &subscribers.Consent{
		SubscriberID: sub.ID, CreatedAt: at(time.Minute), IP: "2001:db8::1", UserAgent: "UA/2",
		Source: "api", TextVersion: "v2", Newsletters: []string{"daily", "weekly"},
	}
	update(t, s, func(tx subscribers.Tx) error {
		if err := tx.AddConsent(first); err != nil {
			return err
		}
		return tx.AddConsent(second)
	})
	if first.ID == 0 || second.ID == 0 || first.ID == second.ID {
		t.Fatalf("consent ids %d, %d", first.ID, second.ID)
	}
	equal := func(t *testing.T, got, want *subscribers.Consent) {
		t.Helper()
		if got.ID != want.ID || got.SubscriberID != want.SubscriberID || !got.CreatedAt.Equal(want.CreatedAt) ||
			got.IP != want.IP || got.UserAgent != want.UserAgent || got.Source != want.Source ||
			got.TextVersion != want.TextVersion || !slices.Equal(got.Newsletters, want.Newsletters) ||
			!got.ConfirmedAt.Equal(want.ConfirmedAt) || got.ConfirmIP != want.ConfirmIP {
			t.Fatalf("consent\n got %+v\nwant %+v", got, want)
		}
	}
	update(t, s, func(tx subscribers.Tx) error {
		got, err := tx.LatestConsent(sub.ID)
		if err != nil {
			return err
		}
		equal(t, got, second)
		return tx.ConfirmConsent(second.ID, at(time.Hour), "198.51.100.7")
	})
	second.ConfirmedAt, second.ConfirmIP = at(time.Hour), "198.51.100.7"
	update(t, s, func(tx subscribers.Tx) error {
		got, err := tx.LatestConsent(sub.ID)
		if err != nil {
			return err
		}
		equal(t, got, second)
		return nil
	})
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		return tx.ConfirmConsent(424242, base(), "")
	})
	wantCode(t, err, herald.ENOTFOUND)
}

func testEvents(t *testing.T, s Store) {
	subs := create(t, s,
		newSubscriber("e1@example.org", subscribers.StatusPending),
		newSubscriber("e2@example.org", subscribers.StatusPending))
	want := []subscribers.Event{
		{SubscriberID: subs[0].ID, At: base(), Kind: subscribers.EventSignup, Detail: "web"},
		{SubscriberID: subs[0].ID, At: at(time.Second), Kind: subscribers.EventImport},
		{SubscriberID: subs[0].ID, At: at(time.Hour), Kind: subscribers.EventConfirm, Detail: "ip 192.0.2.1"},
	}
	update(t, s, func(tx subscribers.Tx) error {
		for i, e := range want {
			if err := tx.AddEvent(e); err != nil {
				return err
			}
			if i == 0 {
				if err := tx.AddEvent(subscribers.Event{SubscriberID: subs[1].ID, At: base(), Kind: subscribers.EventImport}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	got, err := s.SubscriberEvents(t.Context(), subs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID == 0 || g.SubscriberID != w.SubscriberID || !g.At.Equal(w.At) || g.Kind != w.Kind || g.Detail != w.Detail {
			t.Fatalf("event %d: got %+v, want %+v", i, g, w)
		}
		if i > 0 && g.ID <= got[i-1].ID {
			t.Fatalf("events not in id order: %+v", got)
		}
	}
}

func testTokens(t *testing.T, s Store) {
	sub := create(t, s, newSubscriber("tok@example.org", subscribers.StatusPending))[0]
	hash := bytes.Repeat([]byte{0xab, 0x00}, 16)
	tok := subscribers.Token{
		Hash: hash, SubscriberID: sub.ID, Purpose: subscribers.PurposeConfirm,
		CreatedAt: base(), ExpiresAt: at(48 * time.Hour),
	}
	update(t, s, func(tx subscribers.Tx) error { return tx.CreateToken(tok) })
	err := s.Update(t.Context(), func(tx subscribers.Tx) error { return tx.CreateToken(tok) })
	wantCode(t, err, herald.ECONFLICT)

	check := func(t *testing.T, want subscribers.Token) {
		t.Helper()
		update(t, s, func(tx subscribers.Tx) error {
			got, err := tx.TokenByHash(hash)
			if err != nil {
				return err
			}
			if !bytes.Equal(got.Hash, want.Hash) || got.SubscriberID != want.SubscriberID || got.Purpose != want.Purpose ||
				!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.UsedAt.Equal(want.UsedAt) {
				t.Fatalf("token\n got %+v\nwant %+v", got, want)
			}
			return nil
		})
	}
	check(t, tok)
	update(t, s, func(tx subscribers.Tx) error { return tx.UseToken(hash, at(time.Hour)) })
	tok.UsedAt = at(time.Hour)
	check(t, tok)

	err = s.Update(t.Context(), func(tx subscribers.Tx) error {
		_, err := tx.TokenByHash(hash[:len(hash)-1])
		return err
	})
	wantCode(t, err, herald.ENOTFOUND)
	err = s.Update(t.Context(), func(tx subscribers.Tx) error { return tx.UseToken([]byte("nope"), base()) })
	wantCode(t, err, herald.ENOTFOUND)
}

// A CreateSubscriber that fails with ECONFLICT leaves its transaction
// usable: the same transaction reads the existing row and writes, and
// commits. Signup relies on it (it inserts first, reads on a conflict).
func testConflictKeepsTx(t *testing.T, s Store) {
	sub := create(t, s, newSubscriber("Taken@example.org", subscribers.StatusPending))[0]
	// fn may run on the engine's own goroutine: it only records, the test
	// goroutine checks.
	var createErr error
	var found *subscribers.Subscriber
	update(t, s, func(tx subscribers.Tx) error {
		createErr = tx.CreateSubscriber(newSubscriber("taken@example.org", subscribers.StatusPending))
		var err error
		if found, err = tx.SubscriberByEmail("taken@example.org"); err != nil {
			return err
		}
		return tx.AddEvent(subscribers.Event{SubscriberID: found.ID, At: base(), Kind: "after_conflict"})
	})
	wantCode(t, createErr, herald.ECONFLICT)
	if found.ID != sub.ID {
		t.Fatalf("SubscriberByEmail after the conflict = %+v, want subscriber %d", found, sub.ID)
	}
	events, err := s.SubscriberEvents(t.Context(), sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Kind != "after_conflict" {
		t.Errorf("events after the conflict = %+v, want the one written after it", events)
	}
	if n := len(find(t, s, subscribers.Filter{})); n != 1 {
		t.Errorf("%d subscribers, want 1", n)
	}
}

// FindToken reads a token outside any write transaction: it sees what is
// committed, and answers while a write transaction is open (checking a
// link must not wait for the writer).
func testFindToken(t *testing.T, s Store) {
	sub := create(t, s, newSubscriber("find-tok@example.org", subscribers.StatusPending))[0]
	hash := bytes.Repeat([]byte{0xcd, 0x01}, 16)
	tok := subscribers.Token{
		Hash: hash, SubscriberID: sub.ID, Purpose: subscribers.PurposeConfirm,
		CreatedAt: base(), ExpiresAt: at(48 * time.Hour),
	}
	update(t, s, func(tx subscribers.Tx) error { return tx.CreateToken(tok) })
	check := func(t *testing.T, ctx context.Context, want subscribers.Token) {
		t.Helper()
		got, err := s.FindToken(ctx, hash)
		if err != nil {
			t.Fatalf("FindToken: %v", err)
		}
		if !bytes.Equal(got.Hash, want.Hash) || got.SubscriberID != want.SubscriberID || got.Purpose != want.Purpose ||
			!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.UsedAt.Equal(want.UsedAt) {
			t.Fatalf("FindToken\n got %+v\nwant %+v", got, want)
		}
	}
	check(t, t.Context(), tok)
	update(t, s, func(tx subscribers.Tx) error { return tx.UseToken(hash, at(time.Hour)) })
	used := tok
	used.UsedAt = at(time.Hour)
	check(t, t.Context(), used)

	_, err := s.FindToken(t.Context(), hash[:len(hash)-1])
	wantCode(t, err, herald.ENOTFOUND)

	// Inside an open write transaction: the committed token is found at
	// once, the one this transaction has written but not committed is not.
	// (A look-up that needed the writer would wait for this transaction
	// until ctx ends.)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// fn may run on the engine's own goroutine: it only records, the test
	// goroutine checks.
	other := bytes.Repeat([]byte{0xcd, 0x02}, 16)
	var (
		inside            *subscribers.Token
		insideErr, uncErr error
	)
	update(t, s, func(tx subscribers.Tx) error {
		if err := tx.CreateToken(subscribers.Token{Hash: other, SubscriberID: sub.ID, Purpose: subscribers.PurposeConfirm,
			CreatedAt: base(), ExpiresAt: at(time.Hour)}); err != nil {
			return err
		}
		inside, insideErr = s.FindToken(ctx, hash)
		_, uncErr = s.FindToken(ctx, other)
		return nil
	})
	if insideErr != nil || !inside.UsedAt.Equal(used.UsedAt) {
		t.Fatalf("FindToken during a write transaction = %+v, %v; want the committed token", inside, insideErr)
	}
	wantCode(t, uncErr, herald.ENOTFOUND)
	if got, err := s.FindToken(ctx, other); err != nil || got.SubscriberID != sub.ID {
		t.Errorf("FindToken after the commit = %+v, %v", got, err)
	}
}

func testSecret(t *testing.T, s Store) {
	ctx := t.Context()
	calls := 0
	gen := func(v string) func() ([]byte, error) {
		return func() ([]byte, error) { calls++; return []byte(v), nil }
	}
	boom := errors.New("no entropy")
	_, err := s.Secret(ctx, "token_key", func() ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Secret with failing gen = %v, want %v", err, boom)
	}
	first, err := s.Secret(ctx, "token_key", gen("first"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Secret(ctx, "token_key", gen("second"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Secret(ctx, "other", gen("other"))
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != "first" || string(again) != "first" || string(other) != "other" || calls != 2 {
		t.Fatalf("secrets %q %q %q after %d gen calls", first, again, other, calls)
	}

	// Concurrent first uses agree.
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			v, err := s.Secret(ctx, "raced", func() ([]byte, error) { return fmt.Appendf(nil, "v%d", i), nil })
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	for i := range got {
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("raced secrets differ: %q", got)
		}
	}
}

func testUpdateRollback(t *testing.T, s Store) {
	ctx := t.Context()
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx subscribers.Tx) error {
		sub := newSubscriber("rollback@example.org", subscribers.StatusPending)
		if err := tx.CreateSubscriber(sub); err != nil {
			return err
		}
		if err := tx.AddEvent(subscribers.Event{SubscriberID: sub.ID, At: base(), Kind: subscribers.EventSignup}); err != nil {
			return err
		}
		if err := tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindConfirmation, SubscriberID: sub.ID, MessageID: "rb@test", CreatedAt: base()}); err != nil {
			return err
		}
		// Visible inside the transaction...
		if _, err := tx.SubscriberByEmail("rollback@example.org"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want %v", err, boom)
	}
	// ...and gone after it.
	err = s.Update(ctx, func(tx subscribers.Tx) error {
		_, err := tx.SubscriberByEmail("rollback@example.org")
		return err
	})
	wantCode(t, err, herald.ENOTFOUND)
	if got := find(t, s, subscribers.Filter{}); len(got) != 0 {
		t.Fatalf("subscribers after rollback: %v", got)
	}
	wantCounts(t, s, map[string]int{})
}

// outbox

func testEnqueue(t *testing.T, s Store) {
	sub := enqueue(t, s, "q@example.org", 2)
	err := s.Update(t.Context(), func(tx subscribers.Tx) error {
		return tx.Enqueue(subscribers.OutboxMessage{
			Kind: subscribers.KindWelcome, SubscriberID: sub.ID, MessageID: "0.q@example.org@test.example", CreatedAt: base(),
		})
	})
	wantCode(t, err, herald.ECONFLICT)
	wantCounts(t, s, map[string]int{"queued": 2})

	// Not due before its creation time.
	if jobs := claim(t, s, "w1", at(-time.Second), 10); len(jobs) != 0 {
		t.Fatalf("claimed %d messages before they were due", len(jobs))
	}
	jobs := claim(t, s, "w1", base(), 10)
	if len(jobs) != 2 {
		t.Fatalf("claimed %d, want 2", len(jobs))
	}
	j := jobs[0]
	want := delivery.Job{
		ID: j.ID, Kind: subscribers.KindWelcome, SubscriberID: sub.ID, IssueID: 0,
		MessageID: "0.q@example.org@test.example", Attempts: 1, CreatedAt: base(),
		Email: "q@example.org", Name: "Reader q@example.org", SubscriberStatus: string(subscribers.StatusActive),
	}
	if !j.CreatedAt.Equal(want.CreatedAt) || j.CreatedAt.Location() != time.UTC {
		t.Fatalf("job CreatedAt %v, want %v UTC", j.CreatedAt, want.CreatedAt)
	}
	j.CreatedAt = want.CreatedAt
	if j != want {
		t.Fatalf("job\n got %+v\nwant %+v", j, want)
	}
	wantCounts(t, s, map[string]int{"sending": 2})
}

func testClaimOrder(t *testing.T, s Store) {
	// Priorities cycle 5, 0, 5, 1, 9, 0: transactional (lower) first, then by id.
	enqueue(t, s, "order@example.org", 6, 5, 0, 5, 1, 9, 0)
	all := claim(t, s, "peek", base(), 100)
	if len(all) != 6 {
		t.Fatalf("claimed %d, want 6", len(all))
	}
	byMsg := map[string]int64{}
	for _, j := range all {
		byMsg[j.MessageID] = j.ID
	}
	id := func(i int) int64 { return byMsg[fmt.Sprintf("%d.order@example.org@test.example", i)] }
	want := []int64{id(1), id(5), id(3), id(0), id(2), id(4)}
	if got := jobIDs(all); !slices.Equal(got, want) {
		t.Fatalf("claim order %v, want %v", got, want)
	}
	if !(id(0) < id(1) && id(1) < id(2)) {
		t.Fatalf("ids not increasing in enqueue order: %v", byMsg)
	}

	// Put them back; a limit then takes the head of that order.
	settleAll := make([]delivery.Result, 0, len(all))
	for _, j := range all {
		settleAll = append(settleAll, delivery.Result{ID: j.ID, Outcome: delivery.OutcomeRetry, At: base(), NextAttemptAt: base()})
	}
	settle(t, s, "peek", settleAll...)
	if got := jobIDs(claim(t, s, "w", base(), 3)); !slices.Equal(got, want[:3]) {
		t.Fatalf("claim of 3 = %v, want %v", got, want[:3])
	}
	if got := jobIDs(claim(t, s, "w", base(), 3)); !slices.Equal(got, want[3:]) {
		t.Fatalf("second claim of 3 = %v, want %v", got, want[3:])
	}
	if got := claim(t, s, "w", base(), 3); len(got) != 0 {
		t.Fatalf("third claim got %v, want nothing", jobIDs(got))
	}
}

func testClaimLeaseExpiry(t *testing.T, s Store) {
	enqueue(t, s, "lease@example.org", 3)
	first := claim(t, s, "w1", base(), 10) // leased until base()+1m
	if len(first) != 3 {
		t.Fatalf("claimed %d, want 3", len(first))
	}
	if got := claim(t, s, "w2", at(59*time.Second), 10); len(got) != 0 {
		t.Fatalf("claimed %v under a live lease", jobIDs(got))
	}
	if got := claim(t, s, "w2", at(time.Minute), 10); len(got) != 0 {
		t.Fatalf("claimed %v at the lease's last instant", jobIDs(got))
	}
	again := claim(t, s, "w2", at(2*time.Minute), 10)
	if !slices.Equal(jobIDs(again), jobIDs(first)) {
		t.Fatalf("re-claimed %v, want %v", jobIDs(again), jobIDs(first))
	}
	for _, j := range again {
		if j.Attempts != 2 {
			t.Fatalf("job %d attempts %d, want 2", j.ID, j.Attempts)
		}
	}
	// The first worker lost its lease: its results change nothing.
	settle(t, s, "w1", delivery.Result{ID: first[0].ID, Outcome: delivery.OutcomeSent, At: at(3 * time.Minute)})
	wantCounts(t, s, map[string]int{"sending": 3})
	settle(t, s, "w2", delivery.Result{ID: first[0].ID, Outcome: delivery.OutcomeSent, At: at(3 * time.Minute)})
	wantCounts(t, s, map[string]int{"sending": 2, "sent": 1})
}

func testClaimConcurrent(t *testing.T, s Store) {
	const total, workers, batch = 300, 6, 7
	for i := range 3 {
		enqueue(t, s, fmt.Sprintf("conc%d@example.org", i), total/3, 0, 1, 2)
	}
	var (
		mu   sync.Mutex
		seen = map[int64]string{}
		wg   sync.WaitGroup
	)
	for w := range workers {
		owner := fmt.Sprintf("worker-%d", w)
		wg.Go(func() {
			for {
				jobs, err := s.ClaimMessages(t.Context(), owner, base(), time.Minute, batch)
				if err != nil {
					t.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range jobs {
					if prev, ok := seen[j.ID]; ok {
						t.Errorf("message %d claimed by %s and %s", j.ID, prev, owner)
					}
					seen[j.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != total {
		t.Fatalf("claimed %d distinct messages, want %d", len(seen), total)
	}
	wantCounts(t, s, map[string]int{"sending": total})
}

func testSettleOnlyOwner(t *testing.T, s Store) {
	enqueue(t, s, "owner@example.org", 2)
	jobs := claim(t, s, "mine", base(), 10)
	results := []delivery.Result{
		{ID: jobs[0].ID, Outcome: delivery.OutcomeSent, At: at(time.Second)},
		{ID: jobs[1].ID, Outcome: delivery.OutcomeBounced, At: at(time.Second), Error: "550 no such user"},
	}
	settle(t, s, "theirs", results...)
	wantCounts(t, s, map[string]int{"sending": 2})
	if sub, err := s.FindSubscriberByID(t.Context(), jobs[1].SubscriberID); err != nil {
		t.Fatal(err)
	} else if sub.Status != subscribers.StatusActive {
		t.Fatalf("status %s after another owner's bounce, want active", sub.Status)
	}
	settle(t, s, "mine", results...)
	wantCounts(t, s, map[string]int{"sent": 1, "bounced": 1})
	// Settling twice changes nothing more.
	settle(t, s, "mine", delivery.Result{ID: jobs[0].ID, Outcome: delivery.OutcomeFailed, At: at(time.Hour), Error: "late"})
	wantCounts(t, s, map[string]int{"sent": 1, "bounced": 1})

	// An unknown outcome is refused and nothing is written.
	enqueue(t, s, "owner2@example.org", 1)
	j := claim(t, s, "mine", base(), 10)
	err := s.SettleMessages(t.Context(), "mine", []delivery.Result{
		{ID: j[0].ID, Outcome: delivery.OutcomeSent, At: base()},
		{ID: j[0].ID, Outcome: "exploded", At: base()},
	})
	wantCode(t, err, herald.EINVALID)
	wantCounts(t, s, map[string]int{"sent": 1, "bounced": 1, "sending": 1})
}

func testSettleOutcomes(t *testing.T, s Store) {
	enqueue(t, s, "outcomes@example.org", 4)
	jobs := claim(t, s, "w", base(), 10)
	if len(jobs) != 4 {
		t.Fatalf("claimed %d, want 4", len(jobs))
	}
	retryAt := at(10 * time.Minute)
	settle(t, s, "w",
		delivery.Result{ID: jobs[0].ID, SubscriberID: jobs[0].SubscriberID, Outcome: delivery.OutcomeSent, At: at(time.Second)},
		delivery.Result{ID: jobs[1].ID, SubscriberID: jobs[1].SubscriberID, Outcome: delivery.OutcomeRetry, At: at(time.Second), NextAttemptAt: retryAt, Error: "421 try later"},
		delivery.Result{ID: jobs[2].ID, SubscriberID: jobs[2].SubscriberID, Outcome: delivery.OutcomeFailed, At: at(time.Second), Error: "554 rejected"},
		delivery.Result{ID: jobs[3].ID, SubscriberID: jobs[3].SubscriberID, Outcome: delivery.OutcomeCancelled, At: at(time.Second), Error: "unsubscribed"},
	)
	wantCounts(t, s, map[string]int{"sent": 1, "queued": 1, "failed": 1, "cancelled": 1})

	// The retry is not due before NextAttemptAt, even with the old lease long gone.
	if got := claim(t, s, "w", retryAt.Add(-time.Millisecond), 10); len(got) != 0 {
		t.Fatalf("claimed %v before the retry was due", jobIDs(got))
	}
	got := claim(t, s, "w2", retryAt, 10)
	if len(got) != 1 || got[0].ID != jobs[1].ID || got[0].Attempts != 2 {
		t.Fatalf("retry claim = %+v, want message %d at attempt 2", got, jobs[1].ID)
	}
	// Final states are never claimed again.
	settle(t, s, "w2", delivery.Result{ID: got[0].ID, Outcome: delivery.OutcomeSent, At: retryAt})
	if got := claim(t, s, "w3", at(24*time.Hour), 10); len(got) != 0 {
		t.Fatalf("claimed settled messages %v", jobIDs(got))
	}
	wantCounts(t, s, map[string]int{"sent": 2, "failed": 1, "cancelled": 1})
	if sub, err := s.FindSubscriberByID(t.Context(), jobs[0].SubscriberID); err != nil {
		t.Fatal(err)
	} else if sub.Status != subscribers.StatusActive {
		t.Fatalf("status %s, want active: only a bounce changes it", sub.Status)
	}
}

// testSettleRelease: a claimed message handed back unattempted (shutdown,
// pause) is queued again with its attempt given back, in the same batch as
// ordinary results.
func testSettleRelease(t *testing.T, s Store) {
	enqueue(t, s, "release@example.org", 2)
	jobs := claim(t, s, "w", base(), 10)
	if len(jobs) != 2 {
		t.Fatalf("claimed %d, want 2", len(jobs))
	}
	settle(t, s, "w",
		delivery.Result{ID: jobs[0].ID, Outcome: delivery.OutcomeSent, At: at(time.Second)},
		delivery.Result{ID: jobs[1].ID, Outcome: delivery.OutcomeRelease, At: at(time.Second), NextAttemptAt: at(time.Second)},
	)
	wantCounts(t, s, map[string]int{"sent": 1, "queued": 1})
	got := claim(t, s, "w2", at(time.Second), 10)
	if len(got) != 1 || got[0].ID != jobs[1].ID || got[0].Attempts != 1 {
		t.Fatalf("claim after release = %+v, want message %d at attempt 1", got, jobs[1].ID)
	}
}

func testSettleBounced(t *testing.T, s Store) {
	ctx := t.Context()
	sub := enqueue(t, s, "bounce@example.org", 2)
	jobs := claim(t, s, "w", base(), 10)
	reason := "550 5.1.1 mailbox unavailable " + string(bytes.Repeat([]byte("é"), 300))
	settle(t, s, "w", delivery.Result{ID: jobs[0].ID, SubscriberID: sub.ID, Outcome: delivery.OutcomeBounced, At: at(time.Second), Error: reason})
	got, err := s.FindSubscriberByID(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != subscribers.StatusBounced || !got.UpdatedAt.Equal(at(time.Second)) {
		t.Fatalf("subscriber status %s updated %v, want bounced at %v", got.Status, got.UpdatedAt, at(time.Second))
	}
	events, err := s.SubscriberEvents(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 {
		t.Fatalf("events %+v, want one status change", events)
	}
	e := events[0]
	if e.Kind != subscribers.EventStatusChange || !e.At.Equal(at(time.Second)) ||
		len(e.Detail) > 300 || !bytes.HasPrefix([]byte(e.Detail), []byte("bounced: 550 5.1.1")) {
		t.Fatalf("event %+v", e)
	}
	for _, r := range e.Detail {
		if r == 0xFFFD {
			t.Fatalf("event detail cut inside a character: %q", e.Detail)
		}
	}
	// A second bounce for the same reader logs nothing more.
	settle(t, s, "w", delivery.Result{ID: jobs[1].ID, SubscriberID: sub.ID, Outcome: delivery.OutcomeBounced, At: at(time.Minute), Error: "550"})
	if events, err := s.SubscriberEvents(ctx, sub.ID); err != nil || len(events) != 1 {
		t.Fatalf("events after second bounce: %+v, %v", events, err)
	}
	wantCounts(t, s, map[string]int{"bounced": 2})
}
