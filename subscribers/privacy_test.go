package subscribers_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"herald"
	"herald/delivery"
	"herald/store/sqlite"
	"herald/subscribers"
)

// deliverAll claims every due message and settles it as sent, as the
// delivery engine would after a successful send.
func (e *env) deliverAll(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	jobs, err := e.db.ClaimMessages(ctx, "test-worker", e.now, time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	results := make([]delivery.Result, len(jobs))
	for i, j := range jobs {
		results[i] = delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: delivery.OutcomeSent, At: e.now}
	}
	if err := e.db.SettleMessages(ctx, "test-worker", results); err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

// subscriberTables returns every table of the schema with a subscriber_id
// column, and the subscribers table itself.
func (e *env) subscriberTables(t *testing.T) []string {
	t.Helper()
	raw, err := sql.Open("sqlite3", e.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c
        WHERE m.type = 'table' AND c.name = 'subscriber_id' ORDER BY m.name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out = append(out, name)
	}
	return append(out, "subscribers")
}

// rowsOf counts the rows of table that belong to subscriber id.
func (e *env) rowsOf(t *testing.T, table string, id int64) int {
	t.Helper()
	col := "subscriber_id"
	if table == "subscribers" {
		col = "id"
	}
	return e.count(t, `SELECT COUNT(*) FROM "`+table+`" WHERE `+col+` = ?`, id)
}

// richReader makes a reader with something in every table: two signups
// (two consents), a confirmation, delivered mail, a preference change and
// a data request.
func richReader(t *testing.T, e *env, email, name string) *subscribers.Subscriber {
	t.Helper()
	ctx := context.Background()
	req := signup(email)
	req.Name = name
	if err := e.svc.Signup(ctx, req); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Hour)
	if err := e.svc.Signup(ctx, req); err != nil {
		t.Fatal(err)
	}
	sub := e.subscriber(t, email)
	tok, err := e.svc.IssueConfirmToken(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Confirm(ctx, tok, "2001:db8:abcd:12::7"); err != nil {
		t.Fatal(err)
	}
	e.deliverAll(t)
	if _, err := e.svc.UpdatePreferences(ctx, e.svc.PreferencesToken(sub.ID), subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: name}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RequestDataExport(ctx, e.svc.PreferencesToken(sub.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.IssueDataExportToken(ctx, sub.ID); err != nil {
		t.Fatal(err)
	}
	e.deliverAll(t)
	return e.subscriber(t, email)
}

func TestExportHoldsEverythingTheDatabaseHolds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	richReader(t, e, "other@example.org", "Other")
	sub := richReader(t, e, "ana@example.org", "Ana Lima")

	d, err := e.svc.ExportSubscriber(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Every table that holds rows about a subscriber is in the export, row
	// for row. A table added later with a subscriber_id column fails here
	// until the export (and the erase) know about it.
	got := map[string]int{
		"subscribers":            1,
		"subscriber_newsletters": len(d.Subscriber.Newsletters),
		"consents":               len(d.Consents),
		"events":                 len(d.Activity),
		"tokens":                 len(d.Links),
		"messages":               len(d.Deliveries),
	}
	for _, table := range e.subscriberTables(t) {
		n, known := got[table]
		if !known {
			rows, ok := d.OtherRecords[table]
			if !ok {
				t.Errorf("table %s holds subscriber rows but the export does not show it", table)
				continue
			}
			n = len(rows)
		}
		if want := e.rowsOf(t, table, sub.ID); n != want || (known && want == 0) {
			t.Errorf("%s: export has %d rows, the database %d (want them equal, and not 0 for the tables this test fills)", table, n, want)
		}
	}

	if d.Format != subscribers.DossierFormat || d.Subscriber.Email != "ana@example.org" || d.Subscriber.Name != "Ana Lima" || d.Subscriber.ConfirmedAt == nil {
		t.Errorf("profile = %+v", d.Subscriber)
	}
	c := d.Consents[0]
	if c.IP != "192.0.2.0" || c.UserAgent != "test" || c.TextVersion != "2026-11" || !strings.HasPrefix(c.Source, "https://passblue") || len(c.Newsletters) != 2 {
		t.Errorf("first consent = %+v", c)
	}
	last := d.Consents[len(d.Consents)-1]
	if last.ConfirmedAt == nil || last.ConfirmIP != "2001:db8:abcd::" {
		t.Errorf("confirmed consent = %+v, want a confirmation time and the /48 of the confirming IP", last)
	}
	var kinds []string
	for _, m := range d.Deliveries {
		kinds = append(kinds, m.Kind)
		if m.MessageID == "" || m.Status != "sent" || m.Attempts != 1 || m.SentAt == nil {
			t.Errorf("delivery = %+v", m)
		}
	}
	if want := []string{"confirmation", "confirmation", "welcome", "data_export"}; !slices.Equal(kinds, want) {
		t.Errorf("delivery kinds = %v, want %v", kinds, want)
	}
	var events []string
	for _, ev := range d.Activity {
		events = append(events, ev.Kind)
	}
	if want := []string{"signup", "confirm", "newsletters", "data_request"}; !slices.Equal(slices.Compact(events), want) {
		t.Errorf("activity = %v, want %v", events, want)
	}
	if d.Suppression != nil {
		t.Errorf("suppression = %+v, want none", d.Suppression)
	}

	// The JSON carries no token hash, and no other reader.
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, never := range []string{"other@example.org", "hash", "Other"} {
		if bytes.Contains(b, []byte(never)) {
			t.Errorf("export JSON contains %q", never)
		}
	}
	if _, err := e.svc.ExportSubscriber(ctx, 9999); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("export of an unknown id: %v, want ENOTFOUND", err)
	}
}

// After an erase no table holds anything about the reader, and no byte of
// the database, its WAL or its shared-memory file holds the address or the
// name.
func TestEraseLeavesNoTraceInTheFiles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const (
		email = "zebulon.quixote@erase-me.example"
		name  = "Zebulon Quixotemarchetti"
	)
	for _, other := range []string{"keep1@example.org", "keep2@example.org", "keep3@example.org"} {
		activate(t, e, other)
	}
	sub := richReader(t, e, email, name)
	activate(t, e, "keep4@example.org")
	e.deliverAll(t)

	files := []string{e.path, e.path + "-wal", e.path + "-shm"}
	if !contains(t, files, email) {
		t.Fatal("the address is not in the files before the erase: the test would prove nothing")
	}
	if err := e.svc.Erase(ctx, sub.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	for _, table := range e.subscriberTables(t) {
		if n := e.rowsOf(t, table, sub.ID); n != 0 {
			t.Errorf("%s still holds %d rows of the erased subscriber", table, n)
		}
	}
	for _, s := range []string{email, name, "zebulon"} {
		if contains(t, files, s) {
			t.Errorf("%q is still in the database files after the erase", s)
		}
	}
	// The others are untouched.
	if n := e.count(t, `SELECT COUNT(*) FROM subscribers`); n != 4 {
		t.Errorf("subscribers left = %d, want 4", n)
	}
	// The address is suppressed: a signup answers alike and stores nothing.
	if err := e.svc.Signup(ctx, signup(strings.ToUpper(email))); err != nil {
		t.Fatalf("signup of an erased address: %v", err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM subscribers`); n != 4 {
		t.Errorf("subscribers after the erased address signed up = %d, want 4", n)
	}
	if ok, err := e.svc.IsSuppressed(ctx, email); err != nil || !ok {
		t.Errorf("IsSuppressed = %v, %v; want true", ok, err)
	}
	// The delivery totals did not change.
	stats, err := e.db.DeliveryStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := stats[e.now.Format(time.DateOnly)]["welcome/sent"]; got != 1 {
		t.Errorf("delivery_stats welcome/sent = %d, want the erased reader's 1", got)
	}
	if err := e.svc.Erase(ctx, sub.ID, "admin"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("second erase: %v, want ENOTFOUND", err)
	}

	// And still after the database is closed (PRAGMA optimize, final
	// checkpoint).
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{email, name} {
		if contains(t, files, s) {
			t.Errorf("%q is in the database files after Close", s)
		}
	}
}

// contains reports whether any of the files (missing ones are empty) holds
// s, in any ASCII case.
func contains(t *testing.T, files []string, s string) bool {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
			return true
		}
	}
	return false
}

func TestEraseByToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "me@example.org")
	tok := e.svc.PreferencesToken(sub.ID)
	if err := e.svc.EraseByToken(ctx, "forged"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("forged token: %v, want ENOTFOUND", err)
	}
	if err := e.svc.EraseByToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM subscribers`); n != 0 {
		t.Errorf("subscribers = %d, want 0", n)
	}
	if err := e.svc.EraseByToken(ctx, tok); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("second erase: %v, want ENOTFOUND", err)
	}
	list, err := e.svc.Suppressions(ctx, nil, 10)
	if err != nil || len(list) != 1 || list[0].Reason != subscribers.ReasonErased || len(list[0].Hash) != 32 {
		t.Errorf("suppressions = %+v, %v", list, err)
	}
}

// recordingCopies is a subscribers.MailCopies that records the addresses
// it is asked to forget, and the cut-off of each call, and fails with err.
type recordingCopies struct {
	addrs      []string
	keptBefore []time.Time
	err        error
}

func (c *recordingCopies) ForgetRecipients(_ context.Context, addrs []string, keptBefore time.Time) (int, error) {
	c.addrs = append(c.addrs, addrs...)
	c.keptBefore = append(c.keptBefore, keptBefore)
	return len(addrs), c.err
}

// An erase, from the preference page or by the operator, has the erased
// reader's mail copies removed, and only after the erase: a failure there
// is logged without the address and does not undo or fail the erase.
func TestEraseForgetsMailCopies(t *testing.T) {
	ctx := context.Background()
	for _, fail := range []bool{false, true} {
		copies := &recordingCopies{}
		if fail {
			copies.err = errors.New("open outbox: permission denied")
		}
		var logs bytes.Buffer
		e := newEnvWith(t, func(o *subscribers.Options) {
			o.MailCopies = copies
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		me := activate(t, e, "me@example.org")
		you := activate(t, e, "you@example.org")
		if err := e.svc.EraseByToken(ctx, e.svc.PreferencesToken(me.ID)); err != nil {
			t.Fatalf("EraseByToken (copies failing: %v): %v", fail, err)
		}
		if err := e.svc.Erase(ctx, you.ID, "admin"); err != nil {
			t.Fatalf("Erase (copies failing: %v): %v", fail, err)
		}
		if err := e.svc.Erase(ctx, you.ID, "admin"); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("second erase: %v, want ENOTFOUND", err)
		}
		if want := []string{"me@example.org", "you@example.org"}; !slices.Equal(copies.addrs, want) {
			t.Errorf("copies forgotten for %q, want %q", copies.addrs, want)
		}
		// An erased address is suppressed: all its copies go, whenever kept.
		if i := slices.IndexFunc(copies.keptBefore, func(kb time.Time) bool { return !kb.IsZero() }); i >= 0 {
			t.Errorf("erase forgot copies kept before %v, want all of them", copies.keptBefore[i])
		}
		if n := e.count(t, `SELECT COUNT(*) FROM subscribers`); n != 0 {
			t.Errorf("subscribers = %d, want 0", n)
		}
		if l := logs.String(); strings.Contains(l, "@example.org") || fail != strings.Contains(l, "mail copies did not finish") {
			t.Errorf("log (copies failing: %v):\n%s", fail, l)
		}
	}
}

func TestSuppressionBlocksSignupImportAndLists(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, _, err := e.svc.Suppress(ctx, "not an address", ""); !herald.IsCode(err, herald.EINVALID) {
		t.Errorf("suppress of a bad address: %v, want EINVALID", err)
	}
	if _, _, err := e.svc.Suppress(ctx, "x@example.org", "line\nbreak"); !herald.IsCode(err, herald.EINVALID) {
		t.Errorf("suppress with a bad reason: %v, want EINVALID", err)
	}
	entry, added, err := e.svc.Suppress(ctx, "Blocked@Example.org", "asked by phone")
	if err != nil || !added || entry.Reason != "asked by phone" {
		t.Fatalf("Suppress = %+v, %v, %v", entry, added, err)
	}
	again, added, err := e.svc.Suppress(ctx, "blocked@example.org", "other")
	if err != nil || added || again.Reason != "asked by phone" || !bytes.Equal(again.Hash, entry.Hash) {
		t.Errorf("second Suppress = %+v, %v, %v; want the first entry, not added", again, added, err)
	}

	// Signup: the same answer, nothing stored, nothing sent.
	before := e.count(t, `SELECT (SELECT COUNT(*) FROM subscribers) + (SELECT COUNT(*) FROM consents) + (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM messages)`)
	if err := e.svc.Signup(ctx, signup("blocked@example.org")); err != nil {
		t.Fatalf("signup of a suppressed address: %v, want nil like any other", err)
	}
	if after := e.count(t, `SELECT (SELECT COUNT(*) FROM subscribers) + (SELECT COUNT(*) FROM consents) + (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM messages)`); after != before {
		t.Errorf("rows after a suppressed signup: %d, want %d", after, before)
	}

	// Import: the row is rejected, the others imported.
	var rejected []subscribers.Rejection
	st, err := e.svc.Import(ctx, strings.NewReader("email,name\nfine@example.org,Fine\nBLOCKED@example.org,Blocked\n"),
		subscribers.ImportOptions{}, func(r subscribers.Rejection) { rejected = append(rejected, r) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Created != 1 || len(rejected) != 1 || rejected[0].Line != 3 || rejected[0].Reason != "the address is on the suppression list" {
		t.Errorf("import = %+v, rejected %+v", st, rejected)
	}
	// A dry run (its Tx wrapped) says the same.
	rejected = nil
	if _, err := e.svc.DryRun().Import(ctx, strings.NewReader("email\nblocked@example.org\n"), subscribers.ImportOptions{},
		func(r subscribers.Rejection) { rejected = append(rejected, r) }, nil); err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || rejected[0].Reason != "the address is on the suppression list" {
		t.Errorf("dry run rejected %+v", rejected)
	}

	// The list shows hashes, never addresses; it pages by hash.
	for _, a := range []string{"b@example.org", "c@example.org"} {
		if _, _, err := e.svc.Suppress(ctx, a, ""); err != nil {
			t.Fatal(err)
		}
	}
	page1, err := e.svc.Suppressions(ctx, nil, 2)
	if err != nil || len(page1) != 2 {
		t.Fatalf("page 1 = %v, %v", page1, err)
	}
	page2, err := e.svc.Suppressions(ctx, page1[1].Hash, 2)
	if err != nil || len(page2) != 1 || bytes.Compare(page2[0].Hash, page1[1].Hash) <= 0 {
		t.Fatalf("page 2 = %v, %v", page2, err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM suppressions WHERE CAST(hash AS TEXT) LIKE '%example%' OR reason LIKE '%@%'`); n != 0 {
		t.Errorf("%d suppression rows hold an address", n)
	}

	// Unsuppress: the address may sign up again.
	if err := e.svc.Unsuppress(ctx, "nobody@example.org"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("unsuppress of an unlisted address: %v, want ENOTFOUND", err)
	}
	if err := e.svc.Unsuppress(ctx, "blocked@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Signup(ctx, signup("blocked@example.org")); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM subscribers WHERE email = 'blocked@example.org'`); n != 1 {
		t.Errorf("after unsuppress the signup stored %d rows, want 1", n)
	}
	rest, err := e.svc.Suppressions(ctx, nil, 10)
	if err != nil || len(rest) != 2 {
		t.Fatalf("suppressions after unsuppress = %v, %v; want 2", rest, err)
	}
	if err := e.svc.UnsuppressHash(ctx, rest[0].Hash); err != nil {
		t.Errorf("UnsuppressHash: %v", err)
	}
	if err := e.svc.UnsuppressHash(ctx, []byte("short")); !herald.IsCode(err, herald.EINVALID) {
		t.Errorf("UnsuppressHash of a short hash: %v, want EINVALID", err)
	}
}

// Suppressing the address of an existing reader is written in their
// activity log.
func TestSuppressExistingReaderLogsIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "reader@example.org")
	if _, _, err := e.svc.Suppress(ctx, "reader@example.org", "complained by phone"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Unsuppress(ctx, "reader@example.org"); err != nil {
		t.Fatal(err)
	}
	evs := e.events(t, sub.ID)
	if want := []string{"suppressed complained by phone", "unsuppressed"}; !slices.Equal(evs[len(evs)-2:], want) {
		t.Errorf("events = %v, want to end with %v", evs, want)
	}
}

func TestDataRequestThrottleAndDownload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "reader@example.org")
	prefs := e.svc.PreferencesToken(sub.ID)
	if err := e.svc.RequestDataExport(ctx, prefs); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(59 * time.Minute)
	if err := e.svc.RequestDataExport(ctx, prefs); !herald.IsCode(err, herald.ERATELIMIT) {
		t.Errorf("second request within the hour: %v, want ERATELIMIT", err)
	}
	if got := e.queued(t, subscribers.KindDataExport); got != 1 {
		t.Errorf("data export emails = %d, want 1", got)
	}
	e.now = e.now.Add(2 * time.Minute)
	if err := e.svc.RequestDataExport(ctx, prefs); err != nil {
		t.Errorf("request after the hour: %v", err)
	}
	if got := e.queued(t, subscribers.KindDataExport); got != 2 {
		t.Errorf("data export emails = %d, want 2", got)
	}

	tok, err := e.svc.IssueDataExportToken(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM tokens WHERE purpose = 'data_export' AND expires_at = ?`, e.now.Add(7*24*time.Hour).UnixMilli()); n != 1 {
		t.Errorf("stored data export tokens with a 7-day expiry = %d, want 1", n)
	}
	// A confirmation token is not a data export token, nor the reverse.
	confirm, err := e.svc.IssueConfirmToken(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CheckDataExportToken(ctx, confirm); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("a confirmation token as a data export token: %v, want ENOTFOUND", err)
	}
	if _, err := e.svc.CheckConfirmToken(ctx, tok); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("a data export token as a confirmation token: %v, want ENOTFOUND", err)
	}
	if got, err := e.svc.CheckDataExportToken(ctx, tok); err != nil || got.ID != sub.ID {
		t.Fatalf("CheckDataExportToken = %v, %v", got, err)
	}
	d, err := e.svc.DownloadDataExport(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if d.Subscriber.Email != "reader@example.org" || d.Activity[len(d.Activity)-1].Kind != subscribers.EventDataExport {
		t.Errorf("dossier = %+v", d)
	}
	if _, err := e.svc.DownloadDataExport(ctx, tok); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("second download: %v, want EGONE (single use)", err)
	}
	late, err := e.svc.IssueDataExportToken(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(7*24*time.Hour + time.Second)
	if _, err := e.svc.DownloadDataExport(ctx, late); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("download after 7 days: %v, want EGONE", err)
	}

	// A suppressed reader cannot be emailed their data.
	if _, _, err := e.svc.Suppress(ctx, "reader@example.org", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RequestDataExport(ctx, prefs); !herald.IsCode(err, herald.ECONFLICT) {
		t.Errorf("request of a suppressed reader: %v, want ECONFLICT", err)
	}
}

func TestConsentIPModes(t *testing.T) {
	tests := []struct {
		mode              subscribers.IPMode
		signupIP, want    string
		confirmIP, wantCo string
	}{
		{subscribers.IPFull, "192.0.2.7", "192.0.2.7", "2001:db8:abcd:12::7", "2001:db8:abcd:12::7"},
		{subscribers.IPTruncate, "192.0.2.7", "192.0.2.0", "2001:db8:abcd:12::7", "2001:db8:abcd::"},
		{subscribers.IPTruncate, "::ffff:203.0.113.9", "203.0.113.0", "not-an-ip", ""},
		{subscribers.IPHash, "192.0.2.7", "hmac-sha256:", "2001:db8:abcd:12::7", "hmac-sha256:"},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+" "+tt.signupIP, func(t *testing.T) {
			e := newEnvWith(t, func(o *subscribers.Options) { o.IPMode = tt.mode })
			ctx := context.Background()
			req := signup("ip@example.org")
			req.IP = tt.signupIP
			if err := e.svc.Signup(ctx, req); err != nil {
				t.Fatal(err)
			}
			sub := e.subscriber(t, "ip@example.org")
			tok, _ := e.svc.IssueConfirmToken(ctx, sub.ID)
			if _, err := e.svc.Confirm(ctx, tok, tt.confirmIP); err != nil {
				t.Fatal(err)
			}
			d, err := e.svc.ExportSubscriber(ctx, sub.ID)
			if err != nil {
				t.Fatal(err)
			}
			c := d.Consents[0]
			if tt.mode == subscribers.IPHash {
				if !strings.HasPrefix(c.IP, tt.want) || len(c.IP) != len("hmac-sha256:")+32 || strings.Contains(c.IP, "192.0.2") || c.IP == c.ConfirmIP {
					t.Errorf("hashed IPs = %q, %q", c.IP, c.ConfirmIP)
				}
				return
			}
			if c.IP != tt.want || c.ConfirmIP != tt.wantCo {
				t.Errorf("IPs = %q, %q; want %q, %q", c.IP, c.ConfirmIP, tt.want, tt.wantCo)
			}
		})
	}
}

func TestExportConsentsCSV(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	activate(t, e, "a@example.org")
	req := signup("b@example.org")
	req.UserAgent = "=HYPERLINK(\"http://evil.example\")"
	if err := e.svc.Signup(ctx, req); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := e.svc.ExportConsents(ctx, &buf)
	if err != nil || n != 2 {
		t.Fatalf("ExportConsents = %d, %v", n, err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := "subscriber_id,email,created_at,ip,user_agent,source,text_version,newsletters,confirmed_at,confirm_ip"; strings.Join(recs[0], ",") != want {
		t.Errorf("header = %v", recs[0])
	}
	if r := recs[1]; r[1] != "a@example.org" || r[3] != "192.0.2.0" || r[6] != "2026-11" || r[7] != "daily weekly" || r[8] == "" || r[9] != "198.51.100.0" {
		t.Errorf("row 1 = %v", r)
	}
	if r := recs[2]; r[1] != "b@example.org" || !strings.HasPrefix(r[4], "'=") || r[8] != "" {
		t.Errorf("row 2 = %v (the user agent must be defused, confirmed_at empty)", r)
	}
}

func TestRetention(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	start := e.now
	// Old: a pending signup, an active reader's delivered mail.
	if err := e.svc.Signup(ctx, signup("old-pending@example.org")); err != nil {
		t.Fatal(err)
	}
	old := activate(t, e, "old-active@example.org")
	e.deliverAll(t)
	// An old pending signup who signed up again recently stays.
	if err := e.svc.Signup(ctx, signup("again@example.org")); err != nil {
		t.Fatal(err)
	}
	e.now = start.Add(29 * 24 * time.Hour)
	if err := e.svc.Signup(ctx, signup("again@example.org")); err != nil {
		t.Fatal(err)
	}
	// Recent: a pending signup, mail queued but not sent, mail sent.
	e.now = start.Add(200 * 24 * time.Hour)
	if err := e.svc.Signup(ctx, signup("new-pending@example.org")); err != nil {
		t.Fatal(err)
	}
	recent := activate(t, e, "new-active@example.org")
	e.deliverAll(t)
	if err := e.db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: old.ID, MessageID: "queued.1@passblue.example", CreatedAt: start})
	}); err != nil {
		t.Fatal(err)
	}

	r := subscribers.Retention{Store: e.db, PendingRetention: 720 * time.Hour, DeliveryLogDays: 180, Now: func() time.Time { return e.now }}
	st, err := r.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PendingPurged != 2 { // old-pending, and again (last change 171 days ago)
		t.Errorf("pending purged = %d, want 2", st.PendingPurged)
	}
	var left []string
	for _, s := range []string{"old-pending", "again", "old-active", "new-pending", "new-active"} {
		if e.count(t, `SELECT COUNT(*) FROM subscribers WHERE email = ?`, s+"@example.org") == 1 {
			left = append(left, s)
		}
	}
	if want := []string{"old-active", "new-pending", "new-active"}; !slices.Equal(left, want) {
		t.Errorf("subscribers left = %v, want %v", left, want)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM suppressions`); n != 0 {
		t.Errorf("suppressions = %d: a purged signup never confirmed and must not be suppressed", n)
	}
	// The old reader's sent mail went into the statistics; their queued
	// message and the recent reader's mail stay.
	if n := e.rowsOf(t, "messages", old.ID); n != 1 {
		t.Errorf("old reader's messages = %d, want 1 (the queued one)", n)
	}
	if n := e.rowsOf(t, "messages", recent.ID); n != 2 {
		t.Errorf("recent reader's messages = %d, want 2", n)
	}
	stats, err := e.db.DeliveryStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	day := start.Format(time.DateOnly)
	if stats[day]["confirmation/sent"] != 2 || stats[day]["welcome/sent"] != 1 {
		t.Errorf("delivery_stats[%s] = %v, want 2 confirmations (old-active; old-pending's, purged) and 1 welcome", day, stats[day])
	}
	// A second pass finds nothing.
	if st, err := r.RunOnce(ctx); err != nil || st != (subscribers.RetentionStats{}) {
		t.Errorf("second pass = %+v, %v; want nothing", st, err)
	}
}

// A retention pass has the purged signups' mail copies removed, theirs
// only, once their rows are gone; a failure there is logged without the
// addresses and does not fail the pass.
func TestRetentionForgetsMailCopies(t *testing.T) {
	ctx := context.Background()
	for _, fail := range []bool{false, true} {
		e := newEnv(t)
		start := e.now
		for _, addr := range []string{"old-a@example.org", "old-b@example.org"} {
			if err := e.svc.Signup(ctx, signup(addr)); err != nil {
				t.Fatal(err)
			}
		}
		activate(t, e, "active@example.org")
		e.now = start.Add(40 * 24 * time.Hour)
		if err := e.svc.Signup(ctx, signup("new@example.org")); err != nil {
			t.Fatal(err)
		}
		copies := &recordingCopies{}
		if fail {
			copies.err = errors.New("read outbox file 1.eml: permission denied")
		}
		var logs bytes.Buffer
		r := subscribers.Retention{Store: e.db, MailCopies: copies, Now: func() time.Time { return e.now },
			Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		before := time.Now()
		st, err := r.RunOnce(ctx)
		after := time.Now()
		if err != nil {
			t.Fatalf("RunOnce (copies failing: %v): %v", fail, err)
		}
		if st.PendingPurged != 2 || st.MailCopiesRemoved != 2 {
			t.Errorf("stats (copies failing: %v) = %+v, want 2 purged, 2 copies removed", fail, st)
		}
		if got, want := slices.Sorted(slices.Values(copies.addrs)), []string{"old-a@example.org", "old-b@example.org"}; !slices.Equal(got, want) {
			t.Errorf("copies forgotten for %q, want %q", got, want)
		}
		// Only copies kept before the batch was purged go (by the wall
		// clock, not the pass's): a signup that comes back afterwards
		// keeps its new confirmation.
		for _, kb := range copies.keptBefore {
			if kb.Before(before) || kb.After(after) {
				t.Errorf("copies forgotten if kept before %v, want a time during the pass (%v to %v)", kb, before, after)
			}
		}
		if n := e.count(t, `SELECT COUNT(*) FROM subscribers`); n != 2 {
			t.Errorf("subscribers = %d, want 2 (the active reader, the recent signup)", n)
		}
		if l := logs.String(); strings.Contains(l, "@example.org") || fail != strings.Contains(l, "mail copies did not finish") {
			t.Errorf("log (copies failing: %v):\n%s", fail, l)
		}
		// Nothing purged, nothing to forget.
		copies.addrs = nil
		if st, err := r.RunOnce(ctx); err != nil || st != (subscribers.RetentionStats{}) || copies.addrs != nil {
			t.Errorf("second pass = %+v, %v, forgot %q; want nothing", st, err, copies.addrs)
		}
	}
}

// The retention loop runs a pass at once and returns nil when stopped.
func TestRetentionRunStops(t *testing.T) {
	e := newEnv(t)
	if err := e.svc.Signup(context.Background(), signup("p@example.org")); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(31 * 24 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- subscribers.Retention{Store: e.db, Now: func() time.Time { return e.now }, Interval: time.Hour}.Run(ctx)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.count(t, `SELECT COUNT(*) FROM subscribers`) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first pass did not purge the old signup")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

// newEnvWith is newEnv with options changed by mutate.
func newEnvWith(t *testing.T, mutate func(*subscribers.Options)) *env {
	t.Helper()
	e := newEnv(t)
	opts := subscribers.Options{
		Newsletters:     []string{"daily", "weekly"},
		MessageIDDomain: "passblue.example",
		ConsentVersion:  "2026-11",
		Now:             func() time.Time { return e.now },
	}
	mutate(&opts)
	svc, err := subscribers.NewService(context.Background(), e.db, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

// racingStore runs before, once, just ahead of the next write transaction:
// what another request or process might commit between a signup's read of
// the suppression list and its write.
type racingStore struct {
	*sqlite.DB
	before func()
}

func (r *racingStore) Update(ctx context.Context, fn func(subscribers.Tx) error) error {
	if b := r.before; b != nil {
		r.before = nil
		b()
	}
	return r.DB.Update(ctx, fn)
}

// A signup reads the suppression list before its write transaction. An
// address suppressed in between is recorded like any signup a moment
// earlier, and the list then says it is suppressed: the renderer's check
// (cmd/herald) cancels the confirmation, so none is ever sent.
func TestSignupRacingSuppression(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const email = "racing@example.org"
	rs := &racingStore{DB: e.db}
	svc, err := subscribers.NewService(ctx, rs, subscribers.Options{
		Newsletters: []string{"daily", "weekly"}, Now: func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	rs.before = func() {
		if _, added, err := e.svc.Suppress(ctx, email, "test"); err != nil || !added {
			t.Errorf("Suppress = %v, %v", added, err)
		}
	}
	if err := svc.Signup(ctx, signup(email)); err != nil {
		t.Fatal(err)
	}
	if rs.before != nil {
		t.Fatal("the suppression did not run between the read and the write")
	}
	if n := e.count(t, `SELECT COUNT(*) FROM messages m JOIN subscribers s ON s.id = m.subscriber_id
        WHERE s.email = ? AND m.kind = ? AND m.status = 'queued'`, email, subscribers.KindConfirmation); n != 1 {
		t.Fatalf("queued confirmations: %d, want 1 (recorded as a signup a moment earlier would be)", n)
	}
	if ok, err := svc.IsSuppressed(ctx, email); err != nil || !ok {
		t.Errorf("IsSuppressed = %v, %v; want true, which makes the renderer cancel the confirmation", ok, err)
	}
	// Without the race, the same signup stores nothing.
	before := e.count(t, `SELECT COUNT(*) FROM consents`)
	if err := svc.Signup(ctx, signup(email)); err != nil {
		t.Fatal(err)
	}
	if after := e.count(t, `SELECT COUNT(*) FROM consents`); after != before {
		t.Errorf("consents after a suppressed signup: %d, want %d", after, before)
	}
}
