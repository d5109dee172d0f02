package subscribers_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"herald/subscribers"
)

// activeReaders imports active readers of both newsletters.
func activeReaders(t *testing.T, e *env, emails ...string) {
	t.Helper()
	csv := "email,name,newsletters\n"
	for _, a := range emails {
		csv += a + ",,daily weekly\n"
	}
	if _, err := e.svc.Import(context.Background(), strings.NewReader(csv),
		subscribers.ImportOptions{Status: subscribers.StatusActive, Source: "test"}, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func (e *env) record(t *testing.T, svc *subscribers.Service, fs ...subscribers.Feedback) []subscribers.FeedbackOutcome {
	t.Helper()
	out, err := svc.RecordFeedback(context.Background(), fs)
	if err != nil {
		t.Fatalf("RecordFeedback: %v", err)
	}
	return out
}

func (e *env) eventsOf(t *testing.T, id int64, kind string) []subscribers.Event {
	t.Helper()
	all, err := e.db.SubscriberEvents(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []subscribers.Event
	for _, ev := range all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func TestRecordHardBounce(t *testing.T) {
	e := newEnv(t)
	activeReaders(t, e, "gone@example.net", "stays@example.net")
	out := e.record(t, e.svc, subscribers.Feedback{Kind: subscribers.FeedbackHard,
		Recipient: subscribers.Recipient{Email: "Gone@Example.net"}, Reason: "550 5.1.1 <gone@example.net> unknown", Source: "ses"})
	sub := e.subscriber(t, "gone@example.net")
	if o := out[0]; o.Result != subscribers.FeedbackApplied || !o.Changed || o.SubscriberID != sub.ID || o.Status != subscribers.StatusBounced {
		t.Errorf("outcome = %+v", o)
	}
	if sub.Status != subscribers.StatusBounced {
		t.Errorf("status = %s, want bounced", sub.Status)
	}
	ev := e.eventsOf(t, sub.ID, subscribers.EventBounce)
	if len(ev) != 1 || !strings.Contains(ev[0].Detail, "hard bounce via ses") || strings.Contains(ev[0].Detail, "@") {
		t.Errorf("events = %+v", ev)
	}
	if e.subscriber(t, "stays@example.net").Status != subscribers.StatusActive {
		t.Error("another reader changed")
	}
	logs, err := e.db.FindFeedbackLog(context.Background(), 10)
	if err != nil || len(logs) != 1 || logs[0].SubscriberID != sub.ID || strings.Contains(logs[0].Reason, "@") || logs[0].Kind != subscribers.FeedbackHard {
		t.Errorf("log = %+v, %v", logs, err)
	}
	// Again: applied, but nothing changes.
	out = e.record(t, e.svc, subscribers.Feedback{Kind: subscribers.FeedbackHard, Recipient: subscribers.Recipient{Email: "gone@example.net"}})
	if out[0].Changed || out[0].Result != subscribers.FeedbackApplied {
		t.Errorf("second outcome = %+v", out[0])
	}
}

func TestRecordSoftBounces(t *testing.T) {
	e := newEnv(t)
	activeReaders(t, e, "full@example.org")
	svc, err := subscribers.NewService(context.Background(), e.db, subscribers.Options{
		Newsletters: []string{"daily", "weekly"}, SoftBounceThreshold: 3, SoftBounceWindow: 10 * 24 * time.Hour,
		Now: func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	soft := func() subscribers.FeedbackOutcome {
		return e.record(t, svc, subscribers.Feedback{Kind: subscribers.FeedbackSoft,
			Recipient: subscribers.Recipient{Email: "full@example.org"}, Reason: "452 4.2.2 mailbox full", Source: "import:x"})[0]
	}
	for i := 1; i <= 2; i++ {
		if o := soft(); o.SoftBounces != i || o.Changed {
			t.Fatalf("soft bounce %d: %+v", i, o)
		}
		e.now = e.now.Add(24 * time.Hour)
	}
	// Eleven days of silence: the count starts again.
	e.now = e.now.Add(11 * 24 * time.Hour)
	if o := soft(); o.SoftBounces != 1 {
		t.Fatalf("after the window: %+v", o)
	}
	soft()
	if e.subscriber(t, "full@example.org").Status != subscribers.StatusActive {
		t.Fatal("bounced before the threshold")
	}
	o := soft()
	if o.SoftBounces != 3 || !o.Changed || o.Status != subscribers.StatusBounced {
		t.Fatalf("third soft bounce: %+v", o)
	}
	sub := e.subscriber(t, "full@example.org")
	ev := e.eventsOf(t, sub.ID, subscribers.EventBounce)
	if sub.Status != subscribers.StatusBounced || len(ev) != 5 || !strings.Contains(ev[4].Detail, "soft bounce 3 of 3 within 10 days") {
		t.Errorf("status %s, events %+v", sub.Status, ev)
	}
	n, last, err := e.db.SoftBounces(context.Background(), sub.ID)
	if err != nil || n != 3 || !last.Equal(e.now) {
		t.Errorf("SoftBounces = %d, %v, %v", n, last, err)
	}
}

func TestRecordComplaint(t *testing.T) {
	e := newEnv(t)
	activeReaders(t, e, "reader@example.com")
	sub := e.subscriber(t, "reader@example.com")
	// A feedback loop redacts the address; the signed unsubscribe link in
	// the quoted List-Unsubscribe still names the reader.
	lu := "<https://news.example.org/unsubscribe/" + e.svc.UnsubscribeToken(sub.ID) + ">, <mailto:u@news.example.org>"
	out := e.record(t, e.svc, subscribers.Feedback{Kind: subscribers.FeedbackComplaint,
		Recipient: subscribers.Recipient{Email: "redacted@example.com", ListUnsubscribe: lu}, Reason: "abuse", Source: "import:fbl.eml"})
	if o := out[0]; o.Result != subscribers.FeedbackApplied || !o.Changed || o.SubscriberID != sub.ID {
		t.Fatalf("outcome = %+v", o)
	}
	got := e.subscriber(t, "reader@example.com")
	if got.Status != subscribers.StatusComplained || len(got.Newsletters) != 0 {
		t.Errorf("after complaint: %+v", got)
	}
	if ev := e.eventsOf(t, sub.ID, subscribers.EventComplaint); len(ev) != 1 || !strings.Contains(ev[0].Detail, "unsubscribed from every newsletter") {
		t.Errorf("events = %+v", ev)
	}
	// A later hard bounce does not overwrite the complaint.
	out = e.record(t, e.svc, subscribers.Feedback{Kind: subscribers.FeedbackHard, Recipient: subscribers.Recipient{Email: "reader@example.com"}})
	if out[0].Changed || e.subscriber(t, "reader@example.com").Status != subscribers.StatusComplained {
		t.Errorf("hard bounce after a complaint: %+v", out[0])
	}
	// A forged link names no one.
	out = e.record(t, e.svc, subscribers.Feedback{Kind: subscribers.FeedbackComplaint,
		Recipient: subscribers.Recipient{ListUnsubscribe: "<https://news.example.org/unsubscribe/AQF1forged>"}})
	if out[0].Result != subscribers.FeedbackUnmatched {
		t.Errorf("forged link: %+v", out[0])
	}
}

func TestRecordByMessage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.svc.Signup(ctx, subscribers.SignupRequest{Email: "new@example.org", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	sub := e.subscriber(t, "new@example.org")
	if n := e.count(t, `SELECT COUNT(*) FROM messages`); n != 1 {
		t.Fatalf("%d messages, want the confirmation", n)
	}
	outboxID := int64(e.count(t, `SELECT id FROM messages`))
	messageID := e.text(t, `SELECT message_id FROM messages`)

	out := e.record(t, e.svc,
		subscribers.Feedback{Kind: subscribers.FeedbackSoft, Recipient: subscribers.Recipient{MessageID: "<" + messageID + ">", Email: "someone-else@example.org"}},
		subscribers.Feedback{Kind: subscribers.FeedbackSoft, Recipient: subscribers.Recipient{OutboxID: outboxID}},
		subscribers.Feedback{Kind: subscribers.FeedbackSoft, Recipient: subscribers.Recipient{OutboxID: outboxID + 100, MessageID: "nope@x", Email: "new@example.org"}},
	)
	for i, o := range out {
		if o.Result != subscribers.FeedbackApplied || o.SubscriberID != sub.ID || o.SoftBounces != i+1 {
			t.Errorf("report %d: %+v", i, o)
		}
	}
}

// text runs a query for one text value on the database file directly.
func (e *env) text(t *testing.T, query string) string {
	t.Helper()
	raw, err := sql.Open("sqlite3", e.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var s string
	if err := raw.QueryRow(query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func TestRecordUnmatchedUnparsedDuplicate(t *testing.T) {
	e := newEnv(t)
	activeReaders(t, e, "a@example.org")
	before := e.subscriber(t, "a@example.org")
	out := e.record(t, e.svc,
		subscribers.Feedback{Kind: subscribers.FeedbackHard, Recipient: subscribers.Recipient{Email: "stranger@example.org"}, Reason: "550 stranger@example.org", ReportID: "r1"},
		subscribers.Feedback{Kind: subscribers.FeedbackUnparsed, Reason: "malformed delivery-status fields", Source: "import:bad.eml"},
		subscribers.Feedback{Kind: subscribers.FeedbackSoft, Recipient: subscribers.Recipient{Email: "a@example.org"}, ReportID: "r2"},
		subscribers.Feedback{Kind: subscribers.FeedbackSoft, Recipient: subscribers.Recipient{Email: "a@example.org"}, ReportID: "r2"},
	)
	want := []subscribers.FeedbackResult{subscribers.FeedbackUnmatched, subscribers.FeedbackNotParsed, subscribers.FeedbackApplied, subscribers.FeedbackDuplicate}
	for i, w := range want {
		if out[i].Result != w {
			t.Errorf("report %d: %+v, want %s", i, out[i], w)
		}
	}
	after := e.subscriber(t, "a@example.org")
	if after.Status != before.Status || len(e.eventsOf(t, after.ID, subscribers.EventBounce)) != 1 {
		t.Errorf("subscriber changed: %+v", after)
	}
	if n, _, _ := e.db.SoftBounces(context.Background(), after.ID); n != 1 {
		t.Errorf("soft bounces = %d, want 1 (the duplicate is skipped)", n)
	}
	logs, err := e.db.FindFeedbackLog(context.Background(), 10)
	if err != nil || len(logs) != 3 {
		t.Fatalf("log = %+v, %v", logs, err)
	}
	for _, l := range logs {
		if strings.Contains(l.Reason, "@") {
			t.Errorf("log holds an address: %+v", l)
		}
	}
	if logs[2].Result != subscribers.FeedbackUnmatched || logs[2].SubscriberID != 0 || logs[1].Result != subscribers.FeedbackNotParsed {
		t.Errorf("log = %+v", logs)
	}
	if e.count(t, `SELECT COUNT(*) FROM subscribers`) != 1 {
		t.Error("an unmatched report created a subscriber")
	}
	if _, err := e.svc.RecordFeedback(context.Background(), []subscribers.Feedback{{Kind: "weird"}}); err == nil {
		t.Error("unknown kind accepted")
	}
}
