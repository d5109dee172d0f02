package web

import (
	"context"
	"fmt"
	"html"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"herald"
	"herald/adminauth"
	"herald/apitokens"
	"herald/articles"
	"herald/digest"
	"herald/store/sqlite"
	"herald/subscribers"
	"herald/templates"
)

// adminPassword is the admin password the admin harness sets.
const adminPassword = "correct horse battery staple"

// testClock is a clock a test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// adminHarness is the Server over the real services on a SQLite file, with
// the admin pages signed in through adminauth and an outbox directory.
type adminHarness struct {
	srv    *Server
	db     *sqlite.DB
	subs   *subscribers.Service
	admin  *subscribers.Admin
	arts   *articles.Service
	digs   *digest.Service
	tokens *apitokens.Service
	auth   *adminauth.Service
	clock  *testClock
	outbox string
	log    *syncBuffer
}

func newAdminHarness(t testing.TB) *adminHarness {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	h := &adminHarness{db: db, log: &syncBuffer{}, clock: &testClock{t: time.Now()}, outbox: filepath.Join(dir, "outbox")}
	if err := os.Mkdir(h.outbox, 0o755); err != nil {
		t.Fatal(err)
	}
	if h.subs, err = subscribers.NewService(ctx, db, subscribers.Options{Newsletters: []string{"daily", "weekly"}}); err != nil {
		t.Fatal(err)
	}
	h.admin = subscribers.NewAdmin(h.subs, db)
	h.arts = articles.NewService(db, articles.Options{})
	daily, err := digest.ParseSchedule("0 7 * * 1-5", "America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	h.digs, err = digest.NewService(db, db, []digest.Newsletter{
		{ID: "daily", Name: "The Daily Brief", Description: "The UN in five minutes.", Schedule: daily},
		{ID: "weekly", Name: "The Week at the UN"},
	}, digest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.digs.Stop) // before the store closes: cleanups run last first
	h.tokens = apitokens.NewService(db, apitokens.Options{})
	if h.auth, err = adminauth.NewService(ctx, db, adminauth.Options{Now: h.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if err := h.auth.SetPassword(ctx, adminPassword); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.OutboxDir = h.outbox
	h.srv, err = New(cfg, Deps{
		Subscribers: h.subs, Articles: h.arts, Digests: h.digs, Tokens: h.tokens,
		SubscriberAdmin: h.admin, ArticleAdmin: h.arts, IssueAdmin: h.digs, Admin: h.auth,
		Logger: slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// do sends one request through the echo handler; cookie, when set, is the
// session id. A sign-in POST whose form has no csrf field is given the
// sign-in cookie and a form token for it, as the sign-in page would; set
// csrf (even to "") to send what the test chooses.
func (h *adminHarness) do(t *testing.T, method, target, cookie string, form url.Values, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	var req *http.Request
	var signIn *http.Cookie
	if method == http.MethodPost && strings.HasPrefix(target, "/admin/login") && form != nil && !form.Has(fieldCSRF) {
		var tok string
		signIn, tok = h.signInToken(t)
		form = cloneValues(form)
		form.Set(fieldCSRF, tok)
	}
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: adminCookie, Value: cookie})
	}
	if signIn != nil {
		req.AddCookie(signIn)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// signInToken opens the sign-in page and returns the sign-in cookie it set
// and the form token in its form.
func (h *adminHarness) signInToken(t testing.TB) (*http.Cookie, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/admin/login", nil)
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	var ck *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == h.srv.loginCookieName() {
			ck = c
		}
	}
	m := regexpCSRF.FindStringSubmatch(rec.Body.String())
	if ck == nil || m == nil {
		t.Fatalf("the sign-in page set no sign-in cookie or form token: status %d, headers %v", rec.Code, rec.Header())
	}
	return &http.Cookie{Name: ck.Name, Value: ck.Value}, html.UnescapeString(m[1])
}

// hasSessionCookie reports whether an answer set an admin session cookie.
func hasSessionCookie(rec *httptest.ResponseRecorder) bool {
	for _, c := range rec.Result().Cookies() {
		if c.Name == adminCookie && c.MaxAge >= 0 {
			return true
		}
	}
	return false
}

// regexpCSRF finds a form's csrf field in a page.
var regexpCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// cloneValues copies form values, so that a helper may add to them.
func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// sessionOf returns the session id a login answer set.
func sessionOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == adminCookie && c.MaxAge >= 0 {
			return c.Value
		}
	}
	t.Fatalf("no session cookie in the answer; headers %v", rec.Header())
	return ""
}

// login signs in with the password and returns the session id.
func (h *adminHarness) login(t *testing.T) string {
	t.Helper()
	rec := h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}})
	wantStatus(t, rec, http.StatusSeeOther)
	return sessionOf(t, rec)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token a page carries.
func csrfOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no CSRF field in the page:\n%s", rec.Body.String())
	}
	return html.UnescapeString(m[1])
}

func TestAdminLogin(t *testing.T) {
	h := newAdminHarness(t)
	ctx := context.Background()
	_, readTok, err := h.tokens.Create(ctx, "dashboard", apitokens.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	_, writeTok, err := h.tokens.Create(ctx, "ops", apitokens.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		form     url.Values
		want     int
		location string
		body     string
	}{
		{"good password", url.Values{"password": {adminPassword}}, 303, "/admin", ""},
		{"good password, back to the page asked for", url.Values{"password": {adminPassword}, "next": {"/admin/feeds"}}, 303, "/admin/feeds", ""},
		{"next outside the admin pages", url.Values{"password": {adminPassword}, "next": {"//evil.example/admin"}}, 303, "/admin", ""},
		{"next that only starts like it", url.Values{"password": {adminPassword}, "next": {"/administrator"}}, 303, "/admin", ""},
		{"bad password", url.Values{"password": {"correct horse battery stapler"}}, 401, "", "That password is not right."},
		{"nothing entered", url.Values{"password": {""}}, 422, "", "Enter the admin password"},
		{"bootstrap token", url.Values{"token": {"s3cret-admin-token"}}, 303, "/admin", ""},
		{"stored write token", url.Values{"token": {writeTok}}, 303, "/admin", ""},
		{"read token", url.Values{"token": {readTok}}, 403, "", "A read token cannot sign in"},
		{"unknown token", url.Values{"token": {"hrld_nope"}}, 401, "", "That token is not valid."},
		{"no form token", url.Values{"password": {adminPassword}, "csrf": {""}}, 403, "", "did not come from this page"},
		{"forged form token", url.Values{"password": {adminPassword}, "csrf": {"1700000000.AAAAAAAAAAAAAAAAAAAAAA"}}, 403, "", "did not come from this page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do(t, http.MethodPost, "/admin/login", "", tt.form)
			wantStatus(t, rec, tt.want)
			if tt.want != 303 {
				wantBody(t, rec, tt.body)
				if hasSessionCookie(rec) {
					t.Errorf("a failed login set a session cookie: %v", rec.Result().Cookies())
				}
				return
			}
			wantHeader(t, rec, "Location", tt.location)
			raw := sessionOf(t, rec)
			var ck *http.Cookie
			for _, c := range rec.Result().Cookies() {
				if c.Name == adminCookie {
					ck = c
				}
			}
			if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/admin" || ck.MaxAge <= 0 {
				t.Errorf("cookie = %+v, want HttpOnly, Secure (https base URL), SameSite=Strict, Path=/admin, a Max-Age", ck)
			}
			wantStatus(t, h.do(t, http.MethodGet, "/admin", raw, nil), 200)
		})
	}
	logs := h.log.String()
	for _, secret := range []string{adminPassword, readTok, writeTok, "s3cret-admin-token"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a secret %q", secret)
		}
	}
}

// A next that holds a control byte (found by FuzzAdminLogin) or is not a
// plain path goes to the dashboard instead. (A test of its own: the login
// limit allows ten attempts a minute from one address.)
func TestAdminLoginNextIsAPlainPath(t *testing.T) {
	h := newAdminHarness(t)
	for _, next := range []string{"/admin/subs\x10cribers", "/admin/\x7f", "/admin/%zz", "/admin?q=\u2028"} {
		rec := h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}, "next": {next}})
		wantStatus(t, rec, http.StatusSeeOther)
		wantHeader(t, rec, "Location", "/admin")
	}
}

func TestAdminLoginFromAnotherSite(t *testing.T) {
	h := newAdminHarness(t)
	rec := h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}}, "Origin", "https://evil.example")
	wantStatus(t, rec, http.StatusForbidden)
	rec = h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}}, "Sec-Fetch-Site", "cross-site")
	wantStatus(t, rec, http.StatusForbidden)
	rec = h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}}, "Origin", "https://news.example.org", "Sec-Fetch-Site", "same-origin")
	wantStatus(t, rec, http.StatusSeeOther)
}

func TestAdminLoginPage(t *testing.T) {
	h := newAdminHarness(t)
	rec := h.do(t, http.MethodGet, "/admin/login?next=/admin/subscribers", "", nil)
	wantStatus(t, rec, 200)
	wantBody(t, rec, `name="password"`, `name="token"`, `name="next" value="/admin/subscribers"`)
	wantHeader(t, rec, "Cache-Control", "no-store")
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	// Signed in already: straight on.
	raw := h.login(t)
	rec = h.do(t, http.MethodGet, "/admin/login?next=/admin/feeds", raw, nil)
	wantStatus(t, rec, http.StatusSeeOther)
	wantHeader(t, rec, "Location", "/admin/feeds")
}

// seed gives the admin pages something to show: readers, an article, an
// issue, a message in the outbox.
func (h *adminHarness) seed(t *testing.T) (subID, issueID int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.subs.Import(ctx, strings.NewReader("email,name,newsletters\nann@example.org,Ann,daily\nbob@example.org,,daily weekly\n"),
		subscribers.ImportOptions{Status: subscribers.StatusActive}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.subs.Signup(ctx, subscribers.SignupRequest{Email: "pat@example.org", Newsletters: []string{"daily"}, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	subs, err := h.db.FindSubscribers(ctx, subscribers.Filter{Query: "ann@", Limit: 1})
	if err != nil || len(subs) != 1 {
		t.Fatal(subs, err)
	}
	// A reader gets the articles Herald learned of after they joined, to
	// the millisecond.
	time.Sleep(5 * time.Millisecond)
	if _, err := h.arts.UpsertMany(ctx, []articles.Article{{URL: "https://passblue.example/a", Title: "Security Council meets", PublishedAt: time.Now(), Source: articles.SourceAPI}}); err != nil {
		t.Fatal(err)
	}
	iss, err := h.digs.SendNow(ctx, "daily")
	if err != nil {
		t.Fatal(err)
	}
	eml := "From: PassBlue <news@passblue.example>\r\nTo: ann@example.org\r\nSubject: Welcome\r\nDate: Tue, 4 Mar 2025 12:00:00 +0000\r\n" +
		"Message-ID: <1@passblue.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Ann, plain text.\r\n" +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p style=\"color:red\">Hello <b>Ann</b></p>\r\n--b--\r\n"
	if err := os.WriteFile(filepath.Join(h.outbox, "20250304-1.eml"), []byte(eml), 0o644); err != nil {
		t.Fatal(err)
	}
	return subs[0].ID, iss.ID
}

func TestAdminPagesRender(t *testing.T) {
	h := newAdminHarness(t)
	subID, issueID := h.seed(t)
	raw := h.login(t)
	tests := []struct {
		target    string
		fragments []string
	}{
		{"/admin", []string{`<svg class="chart-svg"`, `role="img"`, `<title id="chart-title">Subscriber growth, last 30 days</title>`,
			`<circle class="point"`, `<table class="numbers">`, "Bounce rate", "Complaint rate", "gmail-line", "The Daily Brief"}},
		{"/admin/newsletters", []string{"The Daily Brief", "Next run", `action="/admin/newsletters/daily/send"`, "Send now",
			fmt.Sprintf(`href="/admin/issues/%d"`, issueID)}},
		{fmt.Sprintf("/admin/issues/%d", issueID), []string{`id="progress-percent"`, "Remaining", "messages/s",
			fmt.Sprintf(`data-progress-url="/admin/issues/%d/progress"`, issueID), `sandbox=""`, "srcdoc=", "Security Council meets",
			`<noscript><meta http-equiv="refresh" content="2"></noscript>`}},
		{fmt.Sprintf("/admin/issues/%d/progress", issueID), []string{`"total":2`, `"pending":2`}},
		{"/admin/subscribers", []string{"ann@example.org", "bob@example.org", "pat@example.org"}},
		{"/admin/subscribers?q=pat", []string{"pat@example.org", "pending"}},
		{fmt.Sprintf("/admin/subscribers/%d", subID), []string{"ann@example.org", `name="name" type="text" value="Ann"`, "Consent log", "Activity", "Deliveries"}},
		{"/admin/articles", []string{"Security Council meets"}},
		{"/admin/feeds", []string{"No feed has been polled yet"}},
		{"/admin/mail", []string{"Welcome", "ann@example.org", `href="/admin/mail/20250304-1.eml"`}},
		{"/admin/mail/20250304-1.eml", []string{"Hello Ann, plain text.", `sandbox=""`, "srcdoc=", "Message-ID"}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			rec := h.do(t, http.MethodGet, tt.target, raw, nil)
			wantStatus(t, rec, 200)
			wantBody(t, rec, tt.fragments...)
			if !strings.HasSuffix(tt.target, "/progress") {
				wantBody(t, rec, `name="csrf"`, "Sign out")
			}
		})
	}
	if got := h.do(t, http.MethodGet, "/admin/subscribers?q=nobody", raw, nil); !strings.Contains(got.Body.String(), "No subscriber matches.") {
		t.Errorf("an empty search says:\n%s", got.Body.String())
	}
	// The search matches names too, and lists none of the others.
	rec := h.do(t, http.MethodGet, "/admin/subscribers?q=Ann", raw, nil)
	wantBody(t, rec, "ann@example.org")
	wantNoBody(t, rec, "bob@example.org")
}

func TestAdminRequiresSession(t *testing.T) {
	h := newAdminHarness(t)
	for _, target := range []string{"/admin", "/admin/newsletters", "/admin/issues/1", "/admin/subscribers?q=a", "/admin/subscribers/1",
		"/admin/articles", "/admin/feeds", "/admin/mail", "/admin/mail/x.eml"} {
		for _, cookie := range []string{"", "forged-session-id"} {
			rec := h.do(t, http.MethodGet, target, cookie, nil)
			wantStatus(t, rec, http.StatusSeeOther)
			want := "/admin/login"
			if target != "/admin" {
				want += "?" + url.Values{"next": {target}}.Encode()
			}
			wantHeader(t, rec, "Location", want)
		}
	}
	wantStatus(t, h.do(t, http.MethodGet, "/admin/issues/1/progress", "", nil), http.StatusUnauthorized)
	// An API token is not a session.
	rec := h.do(t, http.MethodGet, "/admin", "", nil, "Authorization", "Bearer s3cret-admin-token")
	wantStatus(t, rec, http.StatusSeeOther)
}

func TestAdminCSRF(t *testing.T) {
	h := newAdminHarness(t)
	subID, _ := h.seed(t)
	raw := h.login(t)
	page := fmt.Sprintf("/admin/subscribers/%d", subID)
	csrf := csrfOf(t, h.do(t, http.MethodGet, page, raw, nil))
	other := csrfOf(t, h.do(t, http.MethodGet, page, h.login(t), nil))
	form := func(token string) url.Values {
		v := url.Values{"name": {"Ann Lee"}, "status": {"active"}, "newsletters_offered": {"1"}, "newsletters": {"daily"}}
		if token != "" {
			v.Set("csrf", token)
		}
		return v
	}
	for _, tt := range []struct {
		name    string
		token   string
		headers []string
	}{
		{"no token", "", nil},
		{"a wrong token", "not-the-token", nil},
		{"another session's token", other, nil},
		{"the right token from another site", csrf, []string{"Origin", "https://evil.example"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do(t, http.MethodPost, page, raw, form(tt.token), tt.headers...)
			wantStatus(t, rec, http.StatusForbidden)
		})
	}
	for _, target := range []string{"/admin/newsletters/daily/send", "/admin/logout", "/admin/issues/1/resend-failed"} {
		wantStatus(t, h.do(t, http.MethodPost, target, raw, url.Values{}), http.StatusForbidden)
	}
	if sub, _ := h.admin.Get(context.Background(), subID); sub.Name != "Ann" {
		t.Fatalf("a refused post changed the name to %q", sub.Name)
	}
	rec := h.do(t, http.MethodPost, page, raw, form(csrf))
	wantStatus(t, rec, http.StatusSeeOther)
	wantHeader(t, rec, "Location", page+"?saved=1")
	if sub, _ := h.admin.Get(context.Background(), subID); sub.Name != "Ann Lee" {
		t.Errorf("name = %q after the change", sub.Name)
	}
}

func TestAdminExpiredSessionKeepsForm(t *testing.T) {
	h := newAdminHarness(t)
	subID, _ := h.seed(t)
	raw := h.login(t)
	page := fmt.Sprintf("/admin/subscribers/%d", subID)
	csrf := csrfOf(t, h.do(t, http.MethodGet, page, raw, nil))

	h.clock.Add(adminauth.DefaultSessionTTL + time.Minute)
	form := url.Values{"csrf": {csrf}, "name": {"Ann <Lee>"}, "status": {"unsubscribed"}, "newsletters_offered": {"1"}, "newsletters": {"daily", "weekly"}}
	rec := h.do(t, http.MethodPost, page, raw, form)
	wantStatus(t, rec, http.StatusUnauthorized)
	wantBody(t, rec, "Your session ended before this was saved", `name="carried_form"`, `name="password"`,
		fmt.Sprintf(`name="next" value="%s"`, page))
	m := regexp.MustCompile(`name="carried_form" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatal("no carried form")
	}
	carried := html.UnescapeString(m[1])
	if sub, _ := h.admin.Get(context.Background(), subID); sub.Name != "Ann" || sub.Status != subscribers.StatusActive {
		t.Fatalf("the expired session's post changed the subscriber: %+v", sub)
	}

	// A forged carried form is dropped: the login goes to the next page.
	rec = h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}, "carried_form": {carried + "x"}, "next": {page}})
	wantStatus(t, rec, http.StatusSeeOther)
	wantHeader(t, rec, "Location", page)

	// A wrong password keeps the carried form for the next try.
	rec = h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {"wrong password!"}, "carried_form": {carried}, "next": {page}})
	wantStatus(t, rec, http.StatusUnauthorized)
	wantBody(t, rec, html.EscapeString(carried))

	rec = h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}, "carried_form": {carried}, "next": {page}})
	wantStatus(t, rec, http.StatusOK)
	fresh := sessionOf(t, rec)
	wantBody(t, rec, "Your change was not saved yet", fmt.Sprintf(`action="%s"`, page),
		`name="name" value="Ann &lt;Lee&gt;"`, `name="status" value="unsubscribed"`, `name="newsletters" value="weekly"`)
	newCSRF := csrfOf(t, rec)
	if newCSRF == csrf {
		t.Error("the resumed form carries the old session's CSRF token")
	}
	// Sending it as the page offers it saves it.
	resend := url.Values{"csrf": {newCSRF}}
	for _, f := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(rec.Body.String(), -1) {
		if f[1] != "csrf" {
			resend.Add(html.UnescapeString(f[1]), html.UnescapeString(f[2]))
		}
	}
	rec = h.do(t, http.MethodPost, page, fresh, resend)
	wantStatus(t, rec, http.StatusSeeOther)
	sub, err := h.admin.Get(context.Background(), subID)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Name != "Ann <Lee>" || sub.Status != subscribers.StatusUnsubscribed || strings.Join(sub.Newsletters, " ") != "daily weekly" {
		t.Errorf("after the resumed post: %+v", sub)
	}

	// A carried form expires.
	h.clock.Add(carryTTL + time.Minute)
	rec = h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}, "carried_form": {carried}, "next": {page}})
	wantStatus(t, rec, http.StatusSeeOther)
}

func TestAdminLogout(t *testing.T) {
	h := newAdminHarness(t)
	raw := h.login(t)
	csrf := csrfOf(t, h.do(t, http.MethodGet, "/admin", raw, nil))
	rec := h.do(t, http.MethodPost, "/admin/logout", raw, url.Values{"csrf": {csrf}})
	wantStatus(t, rec, http.StatusSeeOther)
	wantHeader(t, rec, "Location", "/admin/login")
	if c := rec.Header().Get("Set-Cookie"); !strings.Contains(c, "Max-Age=0") {
		t.Errorf("Set-Cookie = %q, want the cookie deleted", c)
	}
	wantStatus(t, h.do(t, http.MethodGet, "/admin", raw, nil), http.StatusSeeOther)
	if strings.Contains(h.log.String(), raw) {
		t.Error("the session id reached the log")
	}
}

// A session opened with a stored token ends on the first request after the
// token is revoked, not when the session would have expired; sessions
// opened otherwise are untouched.
func TestAdminTokenSessionEndsWhenRevoked(t *testing.T) {
	h := newAdminHarness(t)
	ctx := context.Background()
	_, writeTok, err := h.tokens.Create(ctx, "ops", apitokens.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	rec := h.do(t, http.MethodPost, "/admin/login", "", url.Values{"token": {writeTok}})
	wantStatus(t, rec, http.StatusSeeOther)
	viaToken := sessionOf(t, rec)
	viaPassword := h.login(t)
	wantStatus(t, h.do(t, http.MethodGet, "/admin/feeds", viaToken, nil), http.StatusOK)

	if _, err := h.tokens.Revoke(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	rec = h.do(t, http.MethodGet, "/admin/feeds", viaToken, nil)
	wantStatus(t, rec, http.StatusSeeOther)
	wantHeader(t, rec, "Location", "/admin/login?"+url.Values{"next": {"/admin/feeds"}}.Encode())
	if c := rec.Header().Get("Set-Cookie"); !strings.Contains(c, "Max-Age=0") {
		t.Errorf("Set-Cookie = %q, want the session cookie deleted", c)
	}
	// The session is gone from the store, not only refused.
	if _, err := h.auth.Session(ctx, viaToken); !herald.IsCode(err, herald.EUNAUTHORIZED) {
		t.Errorf("the revoked token's session still exists: err = %v", err)
	}
	// A form posted with the dead session is kept for after signing in.
	rec = h.do(t, http.MethodPost, "/admin/subscribers/1", viaToken, url.Values{"name": {"Ada"}})
	wantStatus(t, rec, http.StatusUnauthorized)
	wantBody(t, rec, "Your session ended before this was saved", `name="carried_form"`, `name="password"`)
	wantStatus(t, h.do(t, http.MethodGet, "/admin/feeds", viaPassword, nil), http.StatusOK)
	if strings.Contains(h.log.String(), writeTok) || strings.Contains(h.log.String(), viaToken) {
		t.Error("a token or session id reached the log")
	}
}

func TestAdminSendNow(t *testing.T) {
	h := newAdminHarness(t)
	h.seed(t)
	raw := h.login(t)
	csrf := csrfOf(t, h.do(t, http.MethodGet, "/admin/newsletters", raw, nil))
	// seed sent the only article to daily's readers: nothing new now.
	rec := h.do(t, http.MethodPost, "/admin/newsletters/daily/send", raw, url.Values{"csrf": {csrf}})
	wantStatus(t, rec, http.StatusConflict)
	wantBody(t, rec, `role="alert"`, "Send now")
	if _, err := h.arts.UpsertMany(context.Background(), []articles.Article{{URL: "https://passblue.example/b", Title: "General Assembly votes", PublishedAt: time.Now(), Source: articles.SourceAPI}}); err != nil {
		t.Fatal(err)
	}
	rec = h.do(t, http.MethodPost, "/admin/newsletters/daily/send", raw, url.Values{"csrf": {csrf}})
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); !regexp.MustCompile(`^/admin/issues/\d+$`).MatchString(loc) {
		t.Errorf("Location = %q", loc)
	}
	wantStatus(t, h.do(t, http.MethodPost, "/admin/newsletters/nope/send", raw, url.Values{"csrf": {csrf}}), http.StatusNotFound)
}

func TestAdminMailViewerRefusesTraversal(t *testing.T) {
	h := newAdminHarness(t)
	h.seed(t)
	raw := h.login(t)
	// A message outside the outbox, and a link to it inside.
	secret := filepath.Join(filepath.Dir(h.outbox), "secret.eml")
	if err := os.WriteFile(secret, []byte("Subject: secret\r\n\r\nsecret body\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(h.outbox, "link.eml")); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{
		"/admin/mail/..%2Fsecret.eml",
		"/admin/mail/..%252Fsecret.eml",
		"/admin/mail/%2E%2E%2Fsecret.eml",
		"/admin/mail/..%5Csecret.eml",
		"/admin/mail/link.eml",
		"/admin/mail/.hidden.eml",
		"/admin/mail/herald.db",
		"/admin/mail/nothing.eml",
	} {
		t.Run(target, func(t *testing.T) {
			rec := h.do(t, http.MethodGet, target, raw, nil)
			if rec.Code != http.StatusNotFound {
				t.Errorf("status = %d, want 404", rec.Code)
			}
			wantNoBody(t, rec, "secret body")
		})
	}
}

func TestAdminTemplatesParse(t *testing.T) {
	a, err := newAdminUI(testConfig(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(templates.FS, "web/admin/*.html")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.sets) != len(files)-1 {
		t.Errorf("parsed %d admin pages of %d files (one is the layout)", len(a.sets), len(files))
	}
}

// An issue still being built never shows 100%: its total is still growing.
func TestPercentDone(t *testing.T) {
	tests := []struct {
		status  digest.IssueStatus
		total   int
		pending int
		want    int
	}{
		{digest.IssueBuilding, 0, 0, 0},
		{digest.IssueBuilding, 500, 0, 99},
		{digest.IssueBuilding, 500, 250, 50},
		{digest.IssueSending, 500, 250, 50},
		{digest.IssueSending, 500, 0, 100},
		{digest.IssueEmpty, 0, 0, 100},
		{digest.IssueSent, 4, 0, 100},
	}
	for _, tt := range tests {
		p := digest.Progress{Total: tt.total, Queued: tt.pending, Sent: tt.total - tt.pending}
		if got := percentDone(tt.status, p); got != tt.want {
			t.Errorf("percentDone(%s, %d of %d pending) = %d, want %d", tt.status, tt.pending, tt.total, got, tt.want)
		}
	}
}
