package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEndToEndPreferences: what a reader changes on their preference page,
// reached through the link in their welcome email, decides the next digest
// delivered over SMTP: a reader who dropped the newsletter and a reader who
// paused get nothing while a reader who changed nothing gets it; once they
// take it back and resume, they do.
func TestEndToEndPreferences(t *testing.T) { eachEngine(t, testEndToEndPreferences) }

func testEndToEndPreferences(t *testing.T) {
	relay, port := startSink(t)
	h := startHeraldWith(t, port, digestNewsletters)
	h.postArticle(t, "first", "First Story", time.Now().Add(-time.Hour))

	prefs := map[string]string{}
	for _, email := range []string{"stays@example.org", "drops@example.org", "pauses@example.org"} {
		h.subscribeConfirmed(t, relay, email, "daily", "weekly")
		welcome := relay.waitFor(t, email, "Welcome")
		link := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/preferences/[A-Za-z0-9_-]+`).FindString(welcome.Text)
		if link == "" {
			t.Fatalf("no preference link in %s's welcome:\n%s", email, welcome.Text)
		}
		prefs[email] = link
	}
	save := func(email string, form url.Values) {
		t.Helper()
		resp, body := postPageForm(t, prefs[email], prefs[email], form)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "preferences are saved") {
			t.Fatalf("saving %s's preferences %v: %d\n%s", email, form, resp.StatusCode, body)
		}
	}
	// A post that did not come from the page (no form token, or another
	// site's) is refused and changes nothing in the store: the reader who
	// changed nothing still gets the digest below.
	for _, forged := range []struct {
		form    url.Values
		headers []string
	}{
		{url.Values{"action": {"unsubscribe_all"}}, nil},
		{url.Values{"action": {"unsubscribe_all"}, "csrf": {"1795340000.AAAAAAAAAAAAAAAAAAAAAA"}}, nil},
		{url.Values{"action": {"unsubscribe_all"}, "csrf": {formTokenOf(t, prefs["stays@example.org"])}},
			[]string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}},
	} {
		req, _ := http.NewRequest(http.MethodPost, prefs["stays@example.org"], strings.NewReader(forged.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(forged.headers); i += 2 {
			req.Header.Set(forged.headers[i], forged.headers[i+1])
		}
		if resp, body := do(t, req); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "nothing was changed") {
			t.Fatalf("forged post %v %v: %d, want 403\n%s", forged.form, forged.headers, resp.StatusCode, body)
		}
	}
	if got := h.adminStatus(t, "stays@example.org"); got != "active" {
		t.Fatalf("after forged posts the reader is %s, want active", got)
	}
	save("drops@example.org", url.Values{"newsletters": {"weekly"}, "pause": {"none"}})
	save("pauses@example.org", url.Values{"newsletters": {"daily", "weekly"}, "pause": {"2w"}})

	send := func() {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"digest", "send", "daily", "--config", h.config}, &stdout, &stderr); code != exitOK {
			t.Fatalf("digest send daily: exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
	}
	send()
	if n := len(relay.digests(t, "stays@example.org", "The Daily Brief")); n != 1 {
		t.Errorf("the reader who changed nothing got %d daily digests, want 1", n)
	}
	for _, email := range []string{"drops@example.org", "pauses@example.org"} {
		if n := len(relay.digests(t, email, "The Daily Brief")); n != 0 {
			t.Errorf("%s got %d daily digests after changing their preferences, want 0", email, n)
		}
	}

	// They change their minds; the next issue reaches all three.
	save("drops@example.org", url.Values{"newsletters": {"daily", "weekly"}, "pause": {"none"}})
	save("pauses@example.org", url.Values{"newsletters": {"daily", "weekly"}, "pause": {"none"}})
	h.postArticle(t, "second", "Second Story", time.Now().Add(-time.Minute))
	send()
	for email, want := range map[string]int{"stays@example.org": 2, "drops@example.org": 1, "pauses@example.org": 1} {
		got := relay.digests(t, email, "The Daily Brief")
		if len(got) != want {
			t.Errorf("%s got %d daily digests in all, want %d", email, len(got), want)
			continue
		}
		if last := got[len(got)-1]; !strings.Contains(last.Text, "Second Story") {
			t.Errorf("%s's latest digest lacks the new story", email)
		}
	}
}

// formTokenRE finds the CSRF field the reader's pages put in every form.
var formTokenRE = regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]+)">`)

// formTokenOf opens a reader's page and returns the form token in it.
func formTokenOf(t *testing.T, pageURL string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, pageURL, nil)
	resp, body := do(t, req)
	m := formTokenRE.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %d, no form token\n%s", pageURL, resp.StatusCode, body)
	}
	return m[1]
}

// postPageForm sends a form of the reader's page at pageURL to action as a
// browser would: with the form token the page wrote.
func postPageForm(t *testing.T, pageURL, action string, form url.Values) (*http.Response, string) {
	t.Helper()
	f := url.Values{"csrf": {formTokenOf(t, pageURL)}}
	for k, v := range form {
		f[k] = v
	}
	return postForm(t, action, f)
}
