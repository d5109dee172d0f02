package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// findChromium returns the browser to drive. Without one the test is
// skipped, except under CI=true, where it fails: CI must run it.
func findChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chromium is not installed (%s): the browser tests need it; .ci/run installs it with apt-get install chromium", chromiumPath)
	}
	t.Skipf("chromium is not installed (%s): skipping the browser test (apt-get install chromium)", chromiumPath)
	return ""
}

// browser is one headless chromium for a test, with a fresh profile.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts chromium; the test's cleanup stops it. Every step of the
// test shares one deadline of limit.
func newBrowser(t *testing.T, limit time.Duration) *browser {
	t.Helper()
	path := findChromium(t)
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1200, 900),
	}
	ctx, cancelTime := context.WithTimeout(context.Background(), limit)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	ctx, cancelBrowser := chromedp.NewContext(ctx)
	// Registered after the profile's TempDir, so it runs before its
	// removal: the browser is gone when its files are deleted.
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelTime() })
	return &browser{t: t, ctx: ctx}
}

// do runs steps that return nothing; on failure it saves a screenshot,
// logs its path and fails the test.
func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fail(step, err)
	}
}

// value runs one step that reads a value, failing as do does.
func value[T any](b *browser, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.fail(step, err)
	}
	return v
}

// fail saves a screenshot of the page and fails the test.
func (b *browser) fail(step string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	where, _ := chromedp.Run(ctx, chromedp.Location())
	if shot, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		path := filepath.Join(b.t.TempDir(), "failure.png")
		if werr := os.WriteFile(path, shot, 0o644); werr == nil {
			b.t.Logf("screenshot of %s saved to %s", where, path)
		}
	} else {
		b.t.Logf("no screenshot: %v", serr)
	}
	b.t.Fatalf("%s: %v", step, err)
}

// TestBrowserSignupToDigest walks the whole product in a real browser: a
// reader signs up through the form on / and confirms through the link in
// the mail the relay caught; the operator signs in to /admin with the
// password set by "herald admin password", finds the reader, sees them on
// the growth chart, and sends a digest from the newsletter page, watching
// the issue page's progress reach 100%.
func TestBrowserSignupToDigest(t *testing.T) {
	b := newBrowser(t, 60*time.Second)
	relay, port := startSink(t)
	// The form demands the proof of work: the page's widget solves it.
	t.Setenv("HERALD_LIMITS_ALTCHA", "always")
	h := startHerald(t, port)
	const (
		reader   = "browser.reader@example.org"
		password = "a long admin password"
	)
	if r := runHerald(t, password+"\n", "admin", "password", "--config", h.config); r.code != exitOK {
		t.Fatalf("herald admin password: %d\n%s", r.code, r.stderr)
	}

	// The reader signs up through the real form.
	b.do("sign up",
		chromedp.Navigate(h.base+"/"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), reader),
		chromedp.SendKeys(chromedp.ID("name"), "Browser Reader"),
		// A person takes a moment: a form sent back sooner than
		// limits.min_fill_time is taken for a bot.
		chromedp.Sleep(2*time.Second),
		chromedp.Click(chromedp.CSS("form.signup-form button[type=submit]")),
		chromedp.WaitVisible(`//h1[contains(., "Check your inbox")]`),
	)
	mail := relay.waitFor(t, reader, "confirm")
	link := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/confirm/[A-Za-z0-9_-]+`).FindString(mail.Text)
	if link == "" {
		t.Fatalf("no confirmation link in:\n%s", mail.Text)
	}
	b.do("confirm",
		chromedp.Navigate(link),
		chromedp.Click(chromedp.CSS("main form button[type=submit]")),
		chromedp.WaitVisible(`//h1[contains(., "subscribed")]`),
	)

	// The operator signs in: the page asked for leads to the login page
	// and back.
	b.do("sign in",
		chromedp.Navigate(h.base+"/admin/subscribers"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("q")),
	)
	if title := value(b, "sign in", chromedp.Title()); !strings.HasPrefix(title, "Subscribers") {
		b.fail("sign in", fmt.Errorf("after signing in the page is %q, want the subscribers page asked for", title))
	}
	// The page before the search lists every subscriber, the reader too,
	// so it is marked first: the reader's link is waited for in a page
	// without the mark, or the click could land on a node of the page
	// being replaced.
	value(b, "find the reader", chromedp.Evaluate[string](`document.body.dataset.before = "search"`))
	found := `//body[not(@data-before)]//table[contains(@class,"results")]//a[contains(., "` + reader + `")]`
	b.do("find the reader",
		chromedp.SendKeys(chromedp.ID("q"), "browser."),
		chromedp.Submit(chromedp.ID("q")),
		chromedp.WaitVisible(found),
		chromedp.Click(found),
		chromedp.WaitVisible(`//h1[contains(., "`+reader+`")]`),
		chromedp.WaitVisible(`//td[contains(., "confirmation")]`), // the deliveries table
	)

	// The dashboard's chart has today's signup as a data point.
	b.do("see the chart", chromedp.Navigate(h.base+"/admin"), chromedp.WaitVisible(chromedp.CSS("svg.chart-svg")))
	points := value(b, "count the points", chromedp.Evaluate[int](`document.querySelectorAll("svg.chart-svg circle.point").length`))
	signedUp := value(b, "find the signup", chromedp.Evaluate[bool](
		`Array.from(document.querySelectorAll("svg.chart-svg .series-signups circle.point")).some(c => Number(c.dataset.value) > 0)`))
	if points == 0 || !signedUp {
		b.fail("see the chart", fmt.Errorf("%d points, a signup among them: %v", points, signedUp))
	}

	// An article arrives through the API; a digest goes out from the
	// newsletter page and its progress reaches 100%.
	body := fmt.Sprintf(`{"url":"https://passblue.example/browser","title":"Seen in a browser","summary":"A story.","published_at":%q}`,
		time.Now().UTC().Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, h.base+"/api/v1/articles", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Content-Type", "application/json")
	if resp, text := do(t, req); resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/articles: %d %s", resp.StatusCode, text)
	}
	b.do("send a digest",
		chromedp.Navigate(h.base+"/admin/newsletters"),
		chromedp.Click(chromedp.CSS(`button[data-send="daily"]`)),
		chromedp.WaitVisible(chromedp.ID("progress-percent")),
	)
	value(b, "watch the progress", chromedp.Poll[bool](`document.getElementById("progress-percent").textContent === "100%"`,
		chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(200*time.Millisecond)))
	if sent := value(b, "read the count", chromedp.Text(chromedp.CSS(`[data-field="sent"]`))); sent != "1" {
		b.fail("send a digest", fmt.Errorf("the issue page says %q sent, want 1", sent))
	}
}

// TestBrowserPreferences: a reader changes their newsletters on the
// preference page reached through their welcome email's link, in a real
// browser; unsubscribes through the email's unsubscribe link and comes
// back with the "Resubscribe" button on the page that follows; then
// leaves with "Unsubscribe from everything". The pages' CSP
// allows no script at all, so this is the page working without
// JavaScript: plain form posts carrying the form token the page wrote and
// whatever Chromium adds to them (Sec-Fetch-Site; Origin: null, since the
// page is sent with Referrer-Policy: no-referrer). Both must pass the
// preference forms' CSRF checks.
func TestBrowserPreferences(t *testing.T) {
	b := newBrowser(t, 60*time.Second)
	relay, port := startSink(t)
	h := startHeraldWith(t, port, digestNewsletters)
	const reader = "browser.prefs@example.org"
	h.subscribeConfirmed(t, relay, reader, "daily", "weekly")
	welcome := relay.waitFor(t, reader, "Welcome")
	link := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/preferences/[A-Za-z0-9_-]+`).FindString(welcome.Text)
	unsubscribe := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/unsubscribe/[A-Za-z0-9_-]+`).FindString(welcome.Text)
	if link == "" || unsubscribe == "" {
		t.Fatalf("no preference or unsubscribe link in the welcome:\n%s", welcome.Text)
	}

	b.do("change preferences",
		chromedp.Navigate(link),
		chromedp.WaitVisible(`//h1[contains(., "Your newsletter preferences")]`),
		chromedp.Click(`//input[@name="newsletters" and @value="weekly"]`), // untick
		chromedp.Click(chromedp.ID("pause-2w")),
		chromedp.Click(chromedp.CSS("form.signup-form button[type=submit]")),
		chromedp.WaitVisible(`//*[@role="status"][contains(., "Your preferences are saved.")]`),
		chromedp.WaitVisible(chromedp.ID("pause-current")),
	)
	if got := h.adminNewsletters(t, reader); got != "daily" {
		b.fail("change preferences", fmt.Errorf("after saving, the reader's newsletters are %q, want daily", got))
	}

	b.do("unsubscribe and come back",
		chromedp.Navigate(unsubscribe),
		chromedp.Click(chromedp.CSS("main form button[type=submit]")),
		chromedp.WaitVisible(`//h1[contains(., "You have been unsubscribed")]`),
		chromedp.Click(`//button[contains(., "Resubscribe")]`),
		chromedp.WaitVisible(`//*[@role="status"][contains(., "Your preferences are saved.")]`),
	)
	if st, got := h.adminStatus(t, reader), h.adminNewsletters(t, reader); st != "active" || got != "daily" {
		b.fail("unsubscribe and come back", fmt.Errorf("after resubscribing, the reader is %s with %q, want active with daily", st, got))
	}

	b.do("leave",
		chromedp.Click(`//button[contains(., "Unsubscribe from everything")]`),
		chromedp.WaitVisible(`//*[@role="status"][contains(., "You are unsubscribed from everything.")]`),
	)
	if got := h.adminStatus(t, reader); got != "unsubscribed" {
		b.fail("leave", fmt.Errorf("after leaving, the reader is %s, want unsubscribed", got))
	}
}

// adminNewsletters looks email up through the admin API and returns its
// newsletters, joined by commas.
func (h *heraldServer) adminNewsletters(t *testing.T, email string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.base+"/api/v1/subscribers?q="+url.QueryEscape(email), nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, body := do(t, req)
	var page struct {
		Items []struct {
			Newsletters []string `json:"newsletters"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &page); resp.StatusCode != http.StatusOK || err != nil || len(page.Items) != 1 {
		t.Fatalf("GET /api/v1/subscribers: %d %v %s", resp.StatusCode, err, body)
	}
	return strings.Join(page.Items[0].Newsletters, ",")
}
