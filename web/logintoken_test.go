package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The sign-in page sets a short-lived __Host- cookie on https and puts a
// form token for it in its form; a second page keeps the same cookie, so
// that two open sign-in pages both work.
func TestAdminLoginPageSetsToken(t *testing.T) {
	h := newAdminHarness(t)
	ck, tok := h.signInToken(t)
	if ck.Name != "__Host-herald_login" || tok == "" {
		t.Fatalf("cookie %q, token %q", ck.Name, tok)
	}
	rec := h.do(t, http.MethodGet, "/admin/login", "", nil)
	for _, c := range rec.Result().Cookies() {
		if c.Name != ck.Name {
			continue
		}
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" ||
			c.MaxAge != int(loginTokenMaxAge.Seconds()) {
			t.Errorf("sign-in cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, no Domain, Max-Age %v", c, loginTokenMaxAge)
		}
	}

	req := httptest.NewRequest(http.MethodGet, "/admin/login", nil)
	req.AddCookie(ck)
	rec = httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == ck.Name && c.Value != ck.Value {
			t.Errorf("a second sign-in page replaced the cookie's nonce")
		}
	}
}

// On an http site the cookie cannot have the __Host- prefix: it is plain,
// not Secure, and sent to the sign-in form only.
func TestAdminLoginTokenOnHTTP(t *testing.T) {
	h := newAdminHarness(t)
	h.srv.admin.secure = false // as New sets it for an http BaseURL
	ck, tok := h.signInToken(t)
	if ck.Name != "herald_login" {
		t.Fatalf("cookie %q, want herald_login", ck.Name)
	}
	rec := h.do(t, http.MethodGet, "/admin/login", "", nil)
	for _, c := range rec.Result().Cookies() {
		if c.Name == ck.Name && (c.Secure || c.Path != "/admin/login" || !c.HttpOnly) {
			t.Errorf("sign-in cookie %+v: want HttpOnly, not Secure, Path=/admin/login", c)
		}
	}
	wantStatus(t, h.postLogin(t, ck, tok), http.StatusSeeOther)
}

// postLogin posts the right password with the sign-in cookie ck (nil: none)
// and the form token tok, from the same origin.
func (h *adminHarness) postLogin(t *testing.T, ck *http.Cookie, tok string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"password": {adminPassword}, fieldCSRF: {tok}, "next": {"/admin/feeds"}}
	req := httptest.NewRequest(http.MethodPost, "/admin/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", formType)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if ck != nil {
		req.AddCookie(ck)
	}
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// A sign-in post without the cookie, without a token, with a token made
// for another cookie or for another form, or with one older than
// loginTokenMaxAge is refused with 403 and the form again, with a clear
// message and a fresh token that then works; the right password alone
// never opens a session.
func TestAdminLoginTokenRefused(t *testing.T) {
	h := newAdminHarness(t)
	clock := &testClock{t: time.Now()}
	h.srv.now = clock.Now
	ck, tok := h.signInToken(t)
	other, otherTok := h.signInToken(t)
	if other.Value == ck.Value {
		t.Fatal("two fresh sign-in pages share a nonce")
	}
	tests := []struct {
		name string
		ck   *http.Cookie
		tok  string
		msg  string
	}{
		{"no cookie", nil, tok, errorLoginForged},
		{"no token", ck, "", errorLoginForged},
		{"token of another cookie", ck, otherTok, errorLoginForged},
		{"token of a reader form", ck, h.srv.readerFormToken(formPreferences, ck.Value), errorLoginForged},
		{"malformed token", ck, "x.y.z", errorLoginForged},
		{"cookie that is not a nonce", &http.Cookie{Name: ck.Name, Value: "short"}, tok, errorLoginForged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.postLogin(t, tt.ck, tt.tok)
			wantStatus(t, rec, http.StatusForbidden)
			wantBody(t, rec, `name="password"`, `name="csrf" value="`)
			if !strings.Contains(rec.Body.String(), strings.ReplaceAll(tt.msg, "'", "&#39;")) {
				t.Errorf("the refusal lacks %q", tt.msg)
			}
			if hasSessionCookie(rec) {
				t.Fatal("a refused sign-in opened a session")
			}
		})
	}

	// The page that refused carries a token that works.
	rec := h.postLogin(t, nil, tok)
	wantStatus(t, rec, http.StatusForbidden)
	var fresh *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == ck.Name {
			fresh = c
		}
	}
	m := regexpCSRF.FindStringSubmatch(rec.Body.String())
	if fresh == nil || m == nil {
		t.Fatalf("the refusal set no cookie or token")
	}
	wantStatus(t, h.postLogin(t, &http.Cookie{Name: fresh.Name, Value: fresh.Value}, m[1]), http.StatusSeeOther)

	// A page left open too long.
	clock.Add(loginTokenMaxAge + time.Minute)
	rec = h.postLogin(t, ck, tok)
	wantStatus(t, rec, http.StatusForbidden)
	wantBody(t, rec, "open for a long time")
	if hasSessionCookie(rec) {
		t.Fatal("an expired sign-in form opened a session")
	}
}
