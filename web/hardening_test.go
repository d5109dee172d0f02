package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestEveryRouteSendsSecurityHeaders: every route in the table, whatever
// it answers (a page, JSON, an error, a 503 for a part not configured),
// carries the headers browsers act on, and a route whose path holds a
// token never lets it leave in a Referer.
func TestEveryRouteSendsSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	routes := h.srv.echo.Routes()
	if len(routes) < 40 {
		t.Fatalf("only %d routes: the table was not read", len(routes))
	}
	for _, r := range routes {
		path := r.Path
		for _, seg := range strings.Split(r.Path, "/") {
			if strings.HasPrefix(seg, ":") {
				path = strings.Replace(path, seg, "x", 1)
			}
		}
		rec := h.do(t, r.Method, path, formType, nil)
		name := r.Method + " " + r.Path
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: %d", name, rec.Code)
		}
		for _, hd := range []struct{ name, want string }{
			{"X-Content-Type-Options", "nosniff"},
			{"Cross-Origin-Opener-Policy", "same-origin"},
			{"Strict-Transport-Security", hstsValue}, // the test base URL is https
		} {
			if got := rec.Header().Get(hd.name); got != hd.want {
				t.Errorf("%s: %s = %q, want %q", name, hd.name, got, hd.want)
			}
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors ") || !strings.Contains(csp, "base-uri 'none'") {
			t.Errorf("%s: CSP = %q", name, csp)
		}
		want := "same-origin"
		for _, p := range []string{"/confirm/", "/unsubscribe/", "/preferences/", "/data/"} {
			if strings.HasPrefix(r.Path, p) {
				want = "no-referrer"
			}
		}
		if got := rec.Header().Get("Referrer-Policy"); got != want {
			t.Errorf("%s: Referrer-Policy = %q, want %q", name, got, want)
		}
	}
}

// TestBodyLimitTripsAtItsNumber: a body of exactly the configured limit is
// read; one byte more is a 413, whether its length is declared or not.
func TestBodyLimitTripsAtItsNumber(t *testing.T) {
	const limit = 2000
	h := newHarness(t, func(c *Config) { c.BodyLimit = limit })
	body := func(n int) string {
		b := form("email", "jane@example.org", "pad", "")
		return b + strings.Repeat("x", n-len(b))
	}
	for _, tc := range []struct {
		size   int
		status int
	}{{limit, http.StatusOK}, {limit + 1, http.StatusRequestEntityTooLarge}} {
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(body(tc.size)))
		wantStatus(t, rec, tc.status)
		// Streamed, with no Content-Length.
		rec = h.do(t, http.MethodPost, "/subscribe", formType, struct{ *strings.Reader }{strings.NewReader(body(tc.size))})
		wantStatus(t, rec, tc.status)
	}
	if n := h.subs.callsOf("Signup"); n != 2 {
		t.Errorf("Signup calls = %d, want 2 (the bodies at the limit)", n)
	}
	// The preference forms have the same limit.
	f := url.Values{"newsletters": {"daily"}, fieldFormToken: {h.srv.readerFormToken(formPreferences, tokGood)}}.Encode() + "&pad="
	rec := h.do(t, http.MethodPost, "/preferences/"+tokGood, formType, strings.NewReader(f+strings.Repeat("x", limit+1-len(f))))
	wantStatus(t, rec, http.StatusRequestEntityTooLarge)
	if len(h.subs.prefs) != 0 {
		t.Errorf("saved from an oversized body: %+v", h.subs.prefs)
	}
}

// TestAdminLoginLimitTripsAtTen: sign-in attempts from one address are
// limited to loginPerMinute; the next is a 429 with Retry-After, even with
// the right password, and a forged X-Real-Ip does not get round it (no
// proxy is trusted here).
func TestAdminLoginLimitTripsAtTen(t *testing.T) {
	h := newAdminHarness(t)
	for i := range loginPerMinute {
		rec := h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {"wrong password!"}})
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, rec.Code)
		}
	}
	rec := h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}})
	wantStatus(t, rec, http.StatusTooManyRequests)
	if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	wantBody(t, rec, "Too many attempts")
	if hasSessionCookie(rec) {
		t.Errorf("a refused sign-in set a session cookie: %v", rec.Result().Cookies())
	}
	rec = h.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {adminPassword}},
		"X-Real-Ip", "198.51.100.9", "X-Forwarded-For", "198.51.100.9")
	wantStatus(t, rec, http.StatusTooManyRequests)
}
