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
		resp, body := postForm(t, prefs[email], form)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "preferences are saved") {
			t.Fatalf("saving %s's preferences %v: %d\n%s", email, form, resp.StatusCode, body)
		}
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
