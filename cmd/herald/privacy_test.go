package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/delivery"
	"herald/subscribers"
)

// The renderer cancels any message to an address on the suppression list,
// and mints the single-use link of a data export email.
func TestRendererSuppressionAndDataExport(t *testing.T) {
	ctx := context.Background()
	cfg, err := loadConfig(configSource{Path: testConfig(t, ""), Explicit: true, LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	subs, err := newSubscribers(ctx, cfg, db, logger)
	if err != nil {
		t.Fatal(err)
	}
	composer, err := newComposer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newRenderer(cfg, subs, db, composer, nil)
	if _, err := subs.Import(ctx, strings.NewReader("email\nkept@example.org\nleft@example.org\nblocked@example.org\n"),
		subscribers.ImportOptions{Status: subscribers.StatusActive}, nil, nil); err != nil {
		t.Fatal(err)
	}
	id := func(email string) int64 {
		found, err := subs.FindSubscribers(ctx, subscribers.Filter{Query: email, Limit: 1})
		if err != nil || len(found) != 1 {
			t.Fatalf("find %s: %v %v", email, found, err)
		}
		return found[0].ID
	}
	if _, err := subs.Unsubscribe(ctx, subs.UnsubscribeToken(id("left@example.org")), "page"); err != nil {
		t.Fatal(err)
	}
	// A signup suppressed after it was recorded (a signup reads the list
	// before its write, so one can race a suppression or an erase): its
	// confirmation must not go out either.
	if err := subs.Signup(ctx, subscribers.SignupRequest{Email: "late@example.org", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"blocked@example.org", "late@example.org"} {
		if _, _, err := subs.Suppress(ctx, addr, "test"); err != nil {
			t.Fatal(err)
		}
	}
	job := func(kind, email string) delivery.Job {
		return delivery.Job{Kind: kind, SubscriberID: id(email), MessageID: "test." + kind + "." + email, CreatedAt: time.Now()}
	}
	for _, tt := range []struct {
		job    delivery.Job
		cancel bool
	}{
		{job(subscribers.KindWelcome, "blocked@example.org"), true},
		{job(subscribers.KindConfirmation, "late@example.org"), true},
		{job(subscribers.KindDataExport, "blocked@example.org"), true},
		{job(subscribers.KindWelcome, "kept@example.org"), false},
		// A reader who left may still ask for their data.
		{job(subscribers.KindDataExport, "left@example.org"), false},
	} {
		_, err := r.Render(ctx, tt.job)
		if got := errors.Is(err, delivery.ErrCancel); got != tt.cancel || (!tt.cancel && err != nil) {
			t.Errorf("Render(%s to subscriber %d) = %v, want cancelled %v", tt.job.Kind, tt.job.SubscriberID, err, tt.cancel)
		}
	}

	e, err := r.Render(ctx, job(subscribers.KindDataExport, "kept@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(regexp.QuoteMeta(cfg.HTTP.BaseURL) + `/data/([A-Za-z0-9_-]{43})`).FindStringSubmatch(e.Text)
	if m == nil || e.Subject != "Your data at "+cfg.Site.Name {
		t.Fatalf("data export email: subject %q, text:\n%s", e.Subject, e.Text)
	}
	if sub, err := subs.CheckDataExportToken(ctx, m[1]); err != nil || sub.Email != "kept@example.org" {
		t.Errorf("the link's token: %v, %v", sub, err)
	}
}

// TestEndToEndDataExportAndErase: a reader asks for their data from their
// preference page and downloads it from the emailed link; the operator
// erases them; their address can then not sign up again, and the consent
// export no longer holds it.
func TestEndToEndDataExportAndErase(t *testing.T) {
	relay, port := startSink(t)
	h := startHerald(t, port)
	const reader = "dora.data@example.org"

	if resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {reader}, "name": {"Dora"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /subscribe: %d\n%s", resp.StatusCode, body)
	}
	confirmation := relay.waitFor(t, reader, "confirm")
	confirmURL := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/confirm/[A-Za-z0-9_-]{43}`).FindString(confirmation.Text)
	if resp, body := postForm(t, confirmURL, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST confirm: %d\n%s", resp.StatusCode, body)
	}
	welcome := relay.waitFor(t, reader, "Welcome")
	prefsURL := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/preferences/[A-Za-z0-9_-]+`).FindString(welcome.Text)
	if prefsURL == "" {
		t.Fatalf("no preferences link in the welcome:\n%s", welcome.Text)
	}

	resp, body := postPageForm(t, prefsURL, prefsURL+"/export", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "link to download your data") {
		t.Fatalf("POST export: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := postPageForm(t, prefsURL, prefsURL+"/export", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("second request within the hour: %d, want 429", resp.StatusCode)
	}
	mail := relay.waitFor(t, reader, "Your data")
	checkEveryEmail(t, mail, h.base)
	dataURL := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/data/[A-Za-z0-9_-]{43}`).FindString(mail.Text)
	if dataURL == "" {
		t.Fatalf("no data link in the email:\n%s", mail.Text)
	}
	req, _ := http.NewRequest(http.MethodGet, dataURL, nil)
	if resp, body := do(t, req); resp.StatusCode != http.StatusOK || !strings.Contains(body, `method="post"`) {
		t.Fatalf("GET data page: %d\n%s", resp.StatusCode, body)
	}
	resp, body = postPageForm(t, dataURL, dataURL, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("POST data: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	var d subscribers.Dossier
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Subscriber.Email != reader || len(d.Consents) != 1 || d.Consents[0].ConfirmedAt == nil || len(d.Deliveries) != 3 {
		t.Errorf("dossier: %+v", d)
	}
	if resp, _ := postForm(t, dataURL, nil); resp.StatusCode != http.StatusGone {
		t.Errorf("second download: %d, want 410", resp.StatusCode)
	}

	// The admin API exports and erases.
	adminReq := func(method, path string) (*http.Response, string) {
		req, _ := http.NewRequest(method, h.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+h.token)
		return do(t, req)
	}
	sid := d.Subscriber.ID
	if resp, body := adminReq(http.MethodGet, "/api/v1/subscribers/"+itoa(sid)+"/export"); resp.StatusCode != http.StatusOK || !strings.Contains(body, reader) {
		t.Fatalf("admin export: %d\n%s", resp.StatusCode, body)
	}
	if resp, body := adminReq(http.MethodDelete, "/api/v1/subscribers/"+itoa(sid)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("admin erase: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := adminReq(http.MethodDelete, "/api/v1/subscribers/"+itoa(sid)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second erase: %d, want 404", resp.StatusCode)
	}
	resp, body = postForm(t, h.base+"/subscribe", url.Values{"email": {reader}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(body), "check your inbox") {
		t.Fatalf("signup of the erased address: %d\n%s", resp.StatusCode, body)
	}
	resp, body = adminReq(http.MethodGet, "/api/v1/suppressions")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"reason":"erased"`) || strings.Contains(body, "@") {
		t.Errorf("suppressions: %d %s", resp.StatusCode, body)
	}
	if code := h.stop(); code != exitOK {
		t.Fatalf("serve exited %d:\n%s", code, h.stderr.String())
	}
	if n := relay.count(reader); n != 3 {
		t.Errorf("the reader received %d emails, want 3 (confirmation, welcome, data): nothing after the erase", n)
	}
	if logs := h.stderr.String(); strings.Contains(logs, reader) || strings.Contains(logs, dataURL[len(h.base)+6:]) {
		t.Errorf("the log holds the address or the data token")
	}

	// The consent export holds no trace of the erased reader.
	r := runHerald(t, "", "consent", "export", "--config", h.config)
	if r.code != exitOK {
		t.Fatalf("consent export: %d %s", r.code, r.stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(recs) != 1 || recs[0][1] != "email" {
		t.Errorf("consent export = %q, %v; want the header only", r.stdout, err)
	}
	if r := runHerald(t, "", "retention", "run", "--config", h.config); r.code != exitOK || !strings.Contains(r.stdout, "purged 0 unconfirmed signups") {
		t.Errorf("retention run: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
