package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jhillyerd/enmime/v2"
)

// digestNewsletters adds two newsletters to testConfig's daily one: each
// takes the articles tagged with its id; daily, without tags, takes every
// article that came from no feed.
const digestNewsletters = `    new_reader_articles: 3
  - id: weekly
    name: The Week at the UN
    schedule: "0 9 * * 6"
    tags: [weekly]
  - id: climate
    name: Climate Watch
    schedule: "0 8 * * *"
    tags: [climate]
`

// api sends an admin API request with a JSON body and returns the status
// and the body.
func (h *heraldServer) api(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, h.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, b := do(t, req)
	return resp.StatusCode, b
}

// postArticle stores an article through the admin API.
func (h *heraldServer) postArticle(t *testing.T, slug, title string, published time.Time, tags ...string) {
	t.Helper()
	a := map[string]any{
		"url":          "https://passblue.example/2026/" + slug + "/",
		"title":        title,
		"summary":      "The summary of " + title + ".",
		"content_html": "<p>The story of " + title + ".</p>",
		"author":       "Desk",
		"published_at": published.UTC().Format(time.RFC3339),
		"tags":         tags,
	}
	b, _ := json.Marshal(a)
	if code, body := h.api(t, http.MethodPost, "/api/v1/articles", string(b)); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/articles %s: %d %s", slug, code, body)
	}
}

// subscribeConfirmed signs email up to newsletters and confirms through the
// link of the confirmation email.
func (h *heraldServer) subscribeConfirmed(t *testing.T, relay *sink, email string, newsletters ...string) {
	t.Helper()
	resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {email}, "name": {"Reader"}, "newsletters": newsletters})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /subscribe %s: %d %s", email, resp.StatusCode, body)
	}
	env := relay.waitFor(t, email, "confirm")
	link := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/confirm/[A-Za-z0-9_-]+`).FindString(env.Text)
	if resp, body := postForm(t, link, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm %s: %d %s", email, resp.StatusCode, body)
	}
	relay.waitFor(t, email, "Welcome")
}

// digests returns the digests of newsletter name that went to rcpt.
func (s *sink) digests(t *testing.T, rcpt, name string) []*enmime.Envelope {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*enmime.Envelope
	for _, m := range s.messages {
		if len(m.to) != 1 || m.to[0] != rcpt {
			continue
		}
		env, err := enmime.ReadEnvelope(bytes.NewReader(m.data))
		if err != nil {
			t.Fatalf("unreadable message: %v", err)
		}
		if strings.HasPrefix(env.GetHeader("Subject"), name+" — ") {
			out = append(out, env)
		}
	}
	return out
}

// TestEndToEndDigest: articles in through the API, readers in through
// signup and confirmation, then `herald digest send daily` beside a running
// serve on the same database: every reader of daily gets one digest with
// their own unsubscribe link and the articles they should get, nobody else
// gets one, and a second send with nothing new sends nothing.
func TestEndToEndDigest(t *testing.T) { eachEngine(t, testEndToEndDigest) }

func testEndToEndDigest(t *testing.T) {
	relay, port := startSink(t)
	h := startHeraldWith(t, port, digestNewsletters)

	now := time.Now()
	h.postArticle(t, "oldest", "Oldest Daily Story", now.Add(-4*time.Hour))
	h.postArticle(t, "older", "Older Daily Story", now.Add(-3*time.Hour))
	h.postArticle(t, "newer", "Newer Daily Story", now.Add(-2*time.Hour))
	h.postArticle(t, "newest", "Newest Daily Story", now.Add(-1*time.Hour))
	h.postArticle(t, "ice", "Ice Sheet Report", now.Add(-90*time.Minute), "climate")
	h.postArticle(t, "week", "The Week in Review", now.Add(-30*time.Minute), "weekly")

	readers := map[string][]string{
		"ana@example.org":   {"daily"},
		"ben@example.org":   {"daily", "climate"},
		"chloe@example.org": {"daily", "weekly"},
		"dev@example.org":   {"weekly"},
		"eve@example.org":   {"climate"},
	}
	for email, nls := range readers {
		h.subscribeConfirmed(t, relay, email, nls...)
	}

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"digest", "send", "daily", "--config", h.config}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("digest send daily: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	m := regexp.MustCompile(`^issue (\d+): sent 3, failed 0, bounced 0, cancelled 0\n$`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("summary = %q, want issue N: sent 3, failed 0, bounced 0, cancelled 0\nstderr: %s", stdout.String(), stderr.String())
	}
	issueID, _ := strconv.ParseInt(m[1], 10, 64)
	if !strings.Contains(stderr.String(), "settled") {
		t.Errorf("no progress lines on a non-terminal stderr:\n%s", stderr.String())
	}

	code2, body := h.api(t, http.MethodGet, "/api/v1/issues/"+m[1], "")
	var prog struct {
		Status               string
		Total, Sent, Pending int
		Failed               int
		Bounced, Cancelled   int
	}
	if err := json.Unmarshal([]byte(body), &prog); code2 != http.StatusOK || err != nil {
		t.Fatalf("GET /api/v1/issues/%d: %d %s", issueID, code2, body)
	}
	if prog.Total != 3 || prog.Sent != 3 || prog.Pending != 0 {
		t.Errorf("issue progress = %+v, want 3 sent, 0 pending", prog)
	}

	unsubscribe := map[string]string{} // List-Unsubscribe -> reader
	for email, nls := range readers {
		got := relay.digests(t, email, "The Daily Brief")
		want := 0
		if nls[0] == "daily" {
			want = 1
		}
		if len(got) != want {
			t.Errorf("%s received %d daily digests, want %d", email, len(got), want)
			continue
		}
		if want == 0 {
			continue
		}
		env := got[0]
		checkEveryEmail(t, env, h.base)
		lu := env.GetHeader("List-Unsubscribe")
		if other, dup := unsubscribe[lu]; dup {
			t.Errorf("%s and %s share List-Unsubscribe %s", email, other, lu)
		}
		unsubscribe[lu] = email
		if mid := env.GetHeader("Message-ID"); !strings.HasPrefix(mid, fmt.Sprintf("<herald.digest.%d.", issueID)) {
			t.Errorf("%s: Message-ID %s does not name issue %d", email, mid, issueID)
		}
		// daily has no tags, so it takes every article that came from no
		// feed, tagged or not; a new reader gets the newest 3.
		for _, title := range []string{"The Week in Review", "Newest Daily Story", "Ice Sheet Report"} {
			if !strings.Contains(env.Text, title) || !strings.Contains(env.HTML, title) {
				t.Errorf("%s: the digest lacks %q", email, title)
			}
		}
		for _, title := range []string{"Newer Daily Story", "Older Daily Story", "Oldest Daily Story"} {
			if strings.Contains(env.Text, title) {
				t.Errorf("%s: the digest carries %q, which is not for them", email, title)
			}
		}
		if !strings.Contains(env.Text, h.base+"/archive/daily/"+m[1]) {
			t.Errorf("%s: the digest lacks its archive link", email)
		}
	}

	// Each link unsubscribes its own reader and nobody else.
	for lu, email := range unsubscribe {
		if email != "ben@example.org" {
			continue
		}
		req, _ := http.NewRequest(http.MethodPost, strings.Trim(strings.SplitN(lu, ",", 2)[0], "<> "), strings.NewReader("List-Unsubscribe=One-Click"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, body := do(t, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("one-click unsubscribe of %s: %d %s", email, resp.StatusCode, body)
		}
	}
	for email := range readers {
		want := "active"
		if email == "ben@example.org" {
			want = "unsubscribed"
		}
		if got := h.adminStatus(t, email); got != want {
			t.Errorf("%s is %s, want %s", email, got, want)
		}
	}

	// Nothing new: the command exits 1, the API answers 409, nothing is sent.
	before := len(relay.messagesSnapshot())
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"digest", "send", "daily", "--config", h.config}, &stdout, &stderr); code != exitFailure || !strings.Contains(stderr.String(), "nothing new") {
		t.Errorf("second digest send: exit %d, stderr %q; want 1 and nothing new", code, stderr.String())
	}
	if code, body := h.api(t, http.MethodPost, "/api/v1/newsletters/daily/issues", ""); code != http.StatusConflict {
		t.Errorf("POST /api/v1/newsletters/daily/issues with nothing new: %d %s, want 409", code, body)
	}
	time.Sleep(300 * time.Millisecond)
	if after := len(relay.messagesSnapshot()); after != before {
		t.Errorf("%d messages were sent with nothing new", after-before)
	}

	// The API sends the climate issue; serve delivers it.
	code3, body := h.api(t, http.MethodPost, "/api/v1/newsletters/climate/issues", "")
	if code3 != http.StatusAccepted {
		t.Fatalf("POST /api/v1/newsletters/climate/issues: %d %s", code3, body)
	}
	var accepted struct{ ID int64 }
	json.Unmarshal([]byte(body), &accepted)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, body = h.api(t, http.MethodGet, fmt.Sprintf("/api/v1/issues/%d", accepted.ID), "")
		json.Unmarshal([]byte(body), &prog)
		if prog.Total > 0 && prog.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the climate issue did not settle: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ben unsubscribed from everything; eve is the one climate reader left.
	if prog.Sent != 1 {
		t.Errorf("climate issue = %+v, want 1 sent", prog)
	}
	if got := relay.digests(t, "eve@example.org", "Climate Watch"); len(got) != 1 || !strings.Contains(got[0].Text, "Ice Sheet Report") {
		t.Errorf("eve received %d climate digests, want 1 with the ice sheet report", len(got))
	}

	if code := h.stop(); code != exitOK {
		t.Errorf("serve exited %d:\n%s", code, h.stderr.String())
	}
}

// messagesSnapshot returns the messages received so far.
func (s *sink) messagesSnapshot() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.messages...)
}
