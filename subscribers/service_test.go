package subscribers_test

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"herald"
	"herald/store/sqlite"
	"herald/subscribers"
)

// env is a Service over a real SQLite file with a clock the test moves.
type env struct {
	svc  *subscribers.Service
	db   *sqlite.DB
	path string
	now  time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{path: filepath.Join(t.TempDir(), "herald.db"), now: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	db, err := sqlite.Open(ctx, e.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e.db = db
	e.svc, err = subscribers.NewService(ctx, db, subscribers.Options{
		Newsletters:     []string{"daily", "weekly"},
		MessageIDDomain: "passblue.example",
		ConsentVersion:  "2026-11",
		Now:             func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// count runs a COUNT(*) query on the database file directly.
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

func (e *env) subscriber(t *testing.T, email string) *subscribers.Subscriber {
	t.Helper()
	subs, err := e.svc.FindSubscribers(context.Background(), subscribers.Filter{Query: email, Limit: 2})
	if err != nil || len(subs) != 1 {
		t.Fatalf("find %s: %v (%d found)", email, err, len(subs))
	}
	return subs[0]
}

func (e *env) queued(t *testing.T, kind string) int {
	t.Helper()
	return e.count(t, `SELECT COUNT(*) FROM messages WHERE kind = ?`, kind)
}

func signup(email string) subscribers.SignupRequest {
	return subscribers.SignupRequest{Email: email, Name: "Ana", IP: "192.0.2.7", UserAgent: "test", Source: "https://passblue.example/2026/11/story"}
}

func TestSignupCreatesPendingWithConsentAndOneConfirmation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	req := signup("Ana@Example.ORG")
	req.Newsletters = []string{"weekly"}
	if err := e.svc.Signup(ctx, req); err != nil {
		t.Fatal(err)
	}
	sub := e.subscriber(t, "ana@example.org")
	if sub.Status != subscribers.StatusPending || sub.Name != "Ana" || strings.Join(sub.Newsletters, ",") != "weekly" {
		t.Errorf("subscriber = %+v", sub)
	}
	if got := e.count(t, `SELECT COUNT(*) FROM consents WHERE subscriber_id = ? AND ip = '192.0.2.0' AND user_agent = 'test' AND text_version = '2026-11' AND source LIKE 'https://passblue%'`, sub.ID); got != 1 {
		t.Errorf("consent rows = %d, want 1", got)
	}
	if got := e.queued(t, subscribers.KindConfirmation); got != 1 {
		t.Errorf("confirmations queued = %d, want 1", got)
	}
}

func TestSignupAnswersAlikeAndThrottlesConfirmations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := 0; i < 20; i++ { // list bombing: many signups for one victim
		if err := e.svc.Signup(ctx, signup("victim@example.org")); err != nil {
			t.Fatalf("signup %d: %v", i, err)
		}
		e.now = e.now.Add(20 * time.Second)
	}
	if got := e.queued(t, subscribers.KindConfirmation); got != 1 {
		t.Fatalf("confirmations after 20 signups in under 10 minutes = %d, want 1", got)
	}
	if got := e.count(t, `SELECT COUNT(*) FROM consents`); got != 1 {
		t.Errorf("consents = %d, want 1 (throttled signups write nothing)", got)
	}
	e.now = e.now.Add(10 * time.Minute)
	if err := e.svc.Signup(ctx, signup("victim@example.org")); err != nil {
		t.Fatal(err)
	}
	if got := e.queued(t, subscribers.KindConfirmation); got != 2 {
		t.Errorf("confirmations after the interval = %d, want 2", got)
	}

	// An active subscriber's signup answers the same and sends nothing.
	activate(t, e, "active@example.org")
	before := e.count(t, `SELECT COUNT(*) FROM messages`)
	e.now = e.now.Add(time.Hour)
	if err := e.svc.Signup(ctx, signup("active@example.org")); err != nil {
		t.Fatalf("signup of an active address: %v", err)
	}
	if got := e.count(t, `SELECT COUNT(*) FROM messages`); got != before {
		t.Errorf("messages after an active address signed up again: %d, want %d", got, before)
	}
	if s := e.subscriber(t, "active@example.org"); s.Status != subscribers.StatusActive {
		t.Errorf("status = %s, want active", s.Status)
	}
}

// activate signs email up and confirms it, returning the subscriber.
func activate(t *testing.T, e *env, email string) *subscribers.Subscriber {
	t.Helper()
	ctx := context.Background()
	if err := e.svc.Signup(ctx, signup(email)); err != nil {
		t.Fatal(err)
	}
	sub := e.subscriber(t, email)
	tok, err := e.svc.IssueConfirmToken(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Confirm(ctx, tok, "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	return e.subscriber(t, email)
}

// A bounced address stays suppressed: a signup for it answers the same and
// sends nothing, whoever typed it.
func TestSignupOfBouncedAddressSendsNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "gone@example.org")
	if err := e.db.Update(ctx, func(tx subscribers.Tx) error {
		s, err := tx.SubscriberByID(sub.ID)
		if err != nil {
			return err
		}
		s.Status = subscribers.StatusBounced
		return tx.UpdateSubscriber(s)
	}); err != nil {
		t.Fatal(err)
	}
	before := e.count(t, `SELECT COUNT(*) FROM messages`)
	e.now = e.now.Add(24 * time.Hour)
	if err := e.svc.Signup(ctx, signup("gone@example.org")); err != nil {
		t.Fatalf("signup of a bounced address: %v", err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM messages`); n != before {
		t.Errorf("a bounced address was sent %d messages", n-before)
	}
	if s := e.subscriber(t, "gone@example.org"); s.Status != subscribers.StatusBounced {
		t.Errorf("status = %s, want bounced", s.Status)
	}
}

func TestSignupRejectsBadInputAndStoresNothing(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		req  subscribers.SignupRequest
		frag string
	}{
		{"bad address", subscribers.SignupRequest{Email: "not-an-address"}, "valid email address"},
		{"CRLF in address", subscribers.SignupRequest{Email: "a@example.org\r\nBcc: b@example.org"}, "control character"},
		{"CRLF in name", subscribers.SignupRequest{Email: "a@example.org", Name: "Eve\r\nBcc: x"}, "name"},
		{"long name", subscribers.SignupRequest{Email: "a@example.org", Name: strings.Repeat("n", 101)}, "name"},
		{"unknown newsletter", subscribers.SignupRequest{Email: "a@example.org", Newsletters: []string{"daily", "sports"}}, `"sports"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.svc.Signup(context.Background(), tt.req)
			if !herald.IsCode(err, herald.EINVALID) {
				t.Fatalf("err = %v, want invalid", err)
			}
			if msg := herald.ErrorMessage(err); !strings.Contains(msg, tt.frag) {
				t.Errorf("message %q does not name %q", msg, tt.frag)
			}
		})
	}
	if n := e.count(t, `SELECT COUNT(*) FROM subscribers`); n != 0 {
		t.Errorf("subscribers stored after bad input: %d", n)
	}
}

func TestConfirmTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.svc.Signup(ctx, signup("reader@example.org")); err != nil {
		t.Fatal(err)
	}
	sub := e.subscriber(t, "reader@example.org")
	tok, err := e.svc.IssueConfirmToken(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}

	// Only the hash rests in the database file (WAL included).
	for _, f := range []string{e.path, e.path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(tok)) {
			t.Errorf("%s holds the raw token", filepath.Base(f))
		}
	}

	// Looking changes nothing.
	if _, err := e.svc.CheckConfirmToken(ctx, tok); err != nil {
		t.Fatalf("check: %v", err)
	}
	if s := e.subscriber(t, "reader@example.org"); s.Status != subscribers.StatusPending {
		t.Fatalf("status after check = %s, want pending", s.Status)
	}
	// Nor does it wait for the writer: it answers while a write
	// transaction is open (through the writer it would wait for this one
	// until its context ended). fn runs on the store's goroutine, so it only
	// records.
	var checkErr error
	if err := e.db.Update(ctx, func(subscribers.Tx) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, checkErr = e.svc.CheckConfirmToken(cctx, tok)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if checkErr != nil {
		t.Fatalf("check during a write transaction: %v", checkErr)
	}

	forged := strings.Repeat("A", len(tok))
	for _, bad := range []string{forged, "", "short", tok + "x", "../../etc/passwd"} {
		if _, err := e.svc.Confirm(ctx, bad, ""); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("Confirm(%q) = %v, want not_found", bad, err)
		}
	}

	got, err := e.svc.Confirm(ctx, tok, "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != subscribers.StatusActive || !got.ConfirmedAt.Equal(e.now) {
		t.Errorf("confirmed subscriber = %+v", got)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM consents WHERE subscriber_id = ? AND confirmed_at IS NOT NULL AND confirm_ip = '198.51.100.0'`, sub.ID); n != 1 {
		t.Errorf("consents confirmed = %d, want 1", n)
	}
	if n := e.queued(t, subscribers.KindWelcome); n != 1 {
		t.Errorf("welcome emails queued = %d, want 1", n)
	}
	if _, err := e.svc.Confirm(ctx, tok, ""); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("reused token: %v, want gone", err)
	}
	if n := e.queued(t, subscribers.KindWelcome); n != 1 {
		t.Errorf("welcome emails after reuse = %d, want 1", n)
	}

	// Expiry.
	if err := e.svc.Signup(ctx, signup("late@example.org")); err != nil {
		t.Fatal(err)
	}
	late := e.subscriber(t, "late@example.org")
	lateTok, err := e.svc.IssueConfirmToken(ctx, late.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(subscribers.DefaultConfirmTTL + time.Second)
	if _, err := e.svc.CheckConfirmToken(ctx, lateTok); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("expired check: %v, want gone", err)
	}
	if _, err := e.svc.Confirm(ctx, lateTok, ""); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("expired confirm: %v, want gone", err)
	}
	if s := e.subscriber(t, "late@example.org"); s.Status != subscribers.StatusPending {
		t.Errorf("status after expired confirm = %s, want pending", s.Status)
	}
}

func TestUnsubscribe(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "leaver@example.org")
	tok := e.svc.UnsubscribeToken(sub.ID)

	if _, err := e.svc.CheckUnsubscribeToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if s := e.subscriber(t, "leaver@example.org"); s.Status != subscribers.StatusActive {
		t.Fatalf("check changed the status to %s", s.Status)
	}
	for i := 0; i < 2; i++ { // idempotent
		got, err := e.svc.Unsubscribe(ctx, tok, "one-click")
		if err != nil || got.Status != subscribers.StatusUnsubscribed {
			t.Fatalf("unsubscribe #%d: %+v, %v", i+1, got, err)
		}
	}
	if n := e.count(t, `SELECT COUNT(*) FROM events WHERE subscriber_id = ? AND kind = 'unsubscribe'`, sub.ID); n != 1 {
		t.Errorf("unsubscribe events = %d, want 1", n)
	}
	if _, err := e.svc.Unsubscribe(ctx, e.svc.PreferencesToken(sub.ID), "page"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("a preferences token unsubscribed: %v", err)
	}
	if _, err := e.svc.Unsubscribe(ctx, e.svc.UnsubscribeToken(sub.ID+1000), "page"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("a token for a missing subscriber: %v, want not_found", err)
	}

	// Coming back takes a new double opt-in: a signup changes nothing but
	// sending a confirmation, and confirming applies the new choices.
	e.now = e.now.Add(time.Hour)
	req := signup("leaver@example.org")
	req.Newsletters = []string{"weekly"}
	if err := e.svc.Signup(ctx, req); err != nil {
		t.Fatal(err)
	}
	back := e.subscriber(t, "leaver@example.org")
	if back.Status != subscribers.StatusUnsubscribed || strings.Join(back.Newsletters, ",") != "daily,weekly" {
		t.Errorf("after signing up again, before confirming: %+v; want unsubscribed with the old choices", back)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM messages WHERE subscriber_id = ? AND kind = 'confirmation'`, sub.ID); n != 2 {
		t.Errorf("confirmations = %d, want 2 (the first signup's and this one)", n)
	}
	tok, err := e.svc.IssueConfirmToken(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.svc.Confirm(ctx, tok, ""); err != nil || got.Status != subscribers.StatusActive || strings.Join(got.Newsletters, ",") != "weekly" {
		t.Errorf("confirm after resubscribing: %+v, %v; want active with weekly", got, err)
	}

}

func TestImport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	gone := activate(t, e, "gone@example.org")
	if _, err := e.svc.Unsubscribe(ctx, e.svc.UnsubscribeToken(gone.ID), "page"); err != nil {
		t.Fatal(err)
	}
	before := e.count(t, `SELECT COUNT(*) FROM messages`)

	csv := "\ufeffEmail,Name,Newsletters,Plan\n" +
		"one@example.org,One,daily,x\n" +
		"not-an-address,Bad,,\n" +
		"two@example.org,Two,daily weekly,\n" +
		"three@example.org,Three,sports,\n" +
		"\"broken@example.org,Broken\",\"x\"y\n" +
		"gone@example.org,Gone,,\n" +
		"long@example.org," + strings.Repeat("x", 70<<10) + ",\n" +
		"latin1@example.org,Jos\xe9,,\n" +
		"\n" +
		"TWO@example.org,Two Again,,\n" +
		"four@example.org\n"
	var rejected []subscribers.Rejection
	st, err := e.svc.Import(ctx, strings.NewReader(csv), subscribers.ImportOptions{Status: subscribers.StatusActive, BatchSize: 2},
		func(r subscribers.Rejection) { rejected = append(rejected, r) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantLines := map[int]string{3: "valid email", 5: `"sports"`, 6: "quoting", 7: "unsubscribed", 8: "longer than", 9: "UTF-8"}
	if len(rejected) != len(wantLines) {
		t.Errorf("rejections = %+v, want lines %v", rejected, wantLines)
	}
	for _, r := range rejected {
		if frag, ok := wantLines[r.Line]; !ok || !strings.Contains(r.Reason, frag) {
			t.Errorf("rejection line %d %q, want %q", r.Line, r.Reason, frag)
		}
	}
	if st.Created != 3 || st.Updated != 1 || st.Rejected != 6 || strings.Join(st.IgnoredColumns, ",") != "plan" {
		t.Errorf("stats = %+v", st)
	}
	if s := e.subscriber(t, "two@example.org"); s.Name != "Two Again" || s.Status != subscribers.StatusActive {
		t.Errorf("two = %+v", s)
	}
	if s := e.subscriber(t, "gone@example.org"); s.Status != subscribers.StatusUnsubscribed {
		t.Errorf("an import re-added an unsubscribed address: %s", s.Status)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM messages`); n != before {
		t.Errorf("an --status active import queued %d messages", n-before)
	}

	// Re-running creates nothing and ends in the same state (the file names
	// two@ twice, so its name is set twice on the way).
	st, err = e.svc.Import(ctx, strings.NewReader(csv), subscribers.ImportOptions{Status: subscribers.StatusActive}, nil, nil)
	if err != nil || st.Created != 0 || st.Unchanged != 2 {
		t.Errorf("second run: %+v, %v", st, err)
	}
	if s := e.subscriber(t, "two@example.org"); s.Name != "Two Again" {
		t.Errorf("two after re-run = %+v", s)
	}

	// A pending import sends each new address one confirmation.
	st, err = e.svc.Import(ctx, strings.NewReader("email\nnew1@example.org\nnew2@example.org\n"), subscribers.ImportOptions{}, nil, nil)
	if err != nil || st.Created != 2 {
		t.Fatalf("pending import: %+v, %v", st, err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM messages WHERE kind = 'confirmation'`); n != 3 { // gone's own + 2
		t.Errorf("confirmations = %d, want 3", n)
	}

	for _, bad := range []string{"", "name,newsletters\nx,y\n", "email,email\n"} {
		if _, err := e.svc.Import(ctx, strings.NewReader(bad), subscribers.ImportOptions{}, nil, nil); !herald.IsCode(err, herald.EINVALID) {
			t.Errorf("Import(%q) = %v, want invalid", bad, err)
		}
	}
}

// A name typed into the public form cannot become a spreadsheet formula in
// the operator's export, and the export imports back unchanged.
func TestExportDefusesFormulas(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const evil = `=HYPERLINK("http://evil.example","Click")`
	if err := e.svc.Signup(ctx, subscribers.SignupRequest{Email: "f@example.org", Name: evil}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := e.svc.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"'=HYPERLINK(`) {
		t.Fatalf("export does not defuse the formula:\n%s", buf.String())
	}
	other := newEnv(t)
	if _, err := other.svc.Import(ctx, &buf, subscribers.ImportOptions{Status: subscribers.StatusActive}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := other.subscriber(t, "f@example.org").Name; got != evil {
		t.Errorf("re-imported name = %q, want %q", got, evil)
	}
}

func TestExport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	activate(t, e, "b@example.org")
	if err := e.svc.Signup(ctx, subscribers.SignupRequest{Email: "a@example.org", Name: `Quote "Me", Please`}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := e.svc.Export(ctx, &buf)
	if err != nil || n != 2 {
		t.Fatalf("export: %d, %v", n, err)
	}
	want := "email,name,newsletters,status,created_at,confirmed_at\n" +
		"b@example.org,Ana,daily weekly,active,2026-11-22T09:00:00Z,2026-11-22T09:00:00Z\n" +
		"a@example.org,\"Quote \"\"Me\"\", Please\",daily weekly,pending,2026-11-22T09:00:00Z,\n"
	if buf.String() != want {
		t.Errorf("export =\n%s\nwant\n%s", buf.String(), want)
	}
}

// BenchmarkSignup measures the whole signup transaction on a real SQLite
// file from many goroutines, as the web server drives it.
func BenchmarkSignup(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "herald.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	svc, err := subscribers.NewService(ctx, db, subscribers.Options{Newsletters: []string{"daily", "weekly"}})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(25)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := svc.Signup(ctx, subscribers.SignupRequest{Email: "reader" + strconv.FormatInt(i, 10) + "@bench.example", Name: "Bench", Newsletters: []string{"daily"}, IP: "192.0.2.1", UserAgent: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
