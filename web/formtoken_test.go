package web

import (
	"html"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readerForm returns form, URL-encoded, with a good form token of kind for
// token added, as the page that shows the form would have written it.
func (h *harness) readerForm(kind, token string, form url.Values) *strings.Reader {
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	f.Set(fieldFormToken, h.srv.readerFormToken(kind, token))
	return strings.NewReader(f.Encode())
}

// formTokenIn returns the csrf field of the first form in a page.
func formTokenIn(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]+)">`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in the page:\n%s", body)
	}
	return m[1]
}

func TestFormToken(t *testing.T) {
	key, err := newFormKey([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newFormKey([]byte("another secret"))
	now := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	s := &Server{formKey: key, now: func() time.Time { return now }}
	good := s.readerFormToken(formPreferences, "tok")
	ts, mac, _ := strings.Cut(good, ".")
	at := func(d time.Duration) string {
		s := &Server{formKey: key, now: func() time.Time { return now.Add(d) }}
		return s.readerFormToken(formPreferences, "tok")
	}
	for _, tc := range []struct {
		name, token, got string
		want             int
	}{
		{"good", "tok", good, formOK},
		{"a day old, just", "tok", at(-formTokenMaxAge), formOK},
		{"a little ahead (another instance's clock)", "tok", at(formTokenSkew), formOK},
		{"too old", "tok", at(-formTokenMaxAge - time.Second), formExpired},
		{"from the future", "tok", at(formTokenSkew + time.Minute), formForged},
		{"missing", "tok", "", formForged},
		{"no dot", "tok", ts + mac, formForged},
		{"another address's token", "tok2", good, formForged},
		{"another kind", "tok", (&Server{formKey: key, now: s.now}).readerFormToken(formData, "tok"), formForged},
		{"another key", "tok", (&Server{formKey: other, now: s.now}).readerFormToken(formPreferences, "tok"), formForged},
		{"time changed", "tok", strconv.FormatInt(now.Unix()+1, 10) + "." + mac, formForged},
		{"mac cut", "tok", ts + "." + mac[:len(mac)-1], formForged},
		{"not a number", "tok", "x" + ts + "." + mac, formForged},
		{"huge", "tok", strings.Repeat("9", 25) + "." + mac, formForged},
	} {
		if got := checkFormToken(key, formPreferences, tc.token, tc.got, now); got != tc.want {
			t.Errorf("%s: checkFormToken(%q) = %d, want %d", tc.name, tc.got, got, tc.want)
		}
	}
	// The separator keeps (kind, token) pairs apart.
	if formTokenMAC(key, "ab", "c", ts) == formTokenMAC(key, "a", "bc", ts) {
		t.Error("two different (kind, token) pairs share a MAC")
	}
}

// forgedPost is one way a POST to a reader form can be forged: the form
// token it carries and the headers a browser would add.
type forgedPost struct {
	name    string
	token   func(h *harness, kind, tok string) string
	headers []string
	want    string // the message on the page
}

func forgedPosts() []forgedPost {
	good := func(h *harness, kind, tok string) string { return h.srv.readerFormToken(kind, tok) }
	old := func(h *harness, kind, tok string) string {
		now := h.srv.now
		defer func() { h.srv.now = now }()
		h.srv.now = func() time.Time { return now().Add(-formTokenMaxAge - time.Minute) }
		return h.srv.readerFormToken(kind, tok)
	}
	return []forgedPost{
		{"no form token", func(*harness, string, string) string { return "" }, nil, errorFormForged},
		{"a made-up form token", func(*harness, string, string) string { return "1795340000.AAAAAAAAAAAAAAAAAAAAAA" }, nil, errorFormForged},
		{"another reader's form token", func(h *harness, kind, _ string) string { return h.srv.readerFormToken(kind, "someone-else") }, nil, errorFormForged},
		{"an expired form token", old, nil, errorFormExpired},
		{"a good token posted by another site", good, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, errorFormForged},
		{"a good token posted by a sibling site", good, []string{"Sec-Fetch-Site", "same-site", "Origin", "https://www.example.org"}, errorFormForged},
		{"a good token from another origin, no Sec-Fetch-Site", good, []string{"Origin", "https://evil.example"}, errorFormForged},
	}
}

// TestReaderFormsRefuseForgedPosts: a POST to any of the reader's forms
// without a good form token from our own page is a 403 that changes
// nothing and shows the form again, with what was sent and a fresh token.
func TestReaderFormsRefuseForgedPosts(t *testing.T) {
	for _, fp := range forgedPosts() {
		t.Run(fp.name, func(t *testing.T) {
			h, priv := newPrivacyHarness(t)
			post := func(path, kind, tok string, form url.Values) *httptest.ResponseRecorder {
				t.Helper()
				f := url.Values{}
				for k, v := range form {
					f[k] = v
				}
				if got := fp.token(h, kind, tok); got != "" {
					f.Set(fieldFormToken, got)
				}
				rec := h.do(t, http.MethodPost, path, formType, strings.NewReader(f.Encode()), fp.headers...)
				wantStatus(t, rec, http.StatusForbidden)
				wantTokenPage(t, rec)
				wantBody(t, rec, `role="alert"`, html.EscapeString(fp.want))
				if fresh := formTokenIn(t, rec.Body.String()); checkFormToken(h.srv.formKey, kind, tok, fresh, h.srv.now()) != formOK {
					t.Errorf("the refused form came back with token %q, which does not pass", fresh)
				}
				return rec
			}

			rec := post("/preferences/"+tokGood, formPreferences, tokGood,
				url.Values{"newsletters": {"weekly"}, "name": {"Mallory's pick"}, "pause": {"4w"}})
			// What the reader chose is kept, to send again.
			wantBody(t, rec, `value="weekly" aria-describedby="nl-1-about" checked>`, `value="Mallory&#39;s pick"`, `value="4w" checked>`)
			wantNoBody(t, rec, `value="daily" aria-describedby="nl-0-about" checked>`)
			rec = post("/preferences/"+tokGood, formPreferences, tokGood, url.Values{"action": {"unsubscribe_all"}})
			wantBody(t, rec, "Unsubscribe from everything", `value="daily" aria-describedby="nl-0-about" checked>`)
			post("/preferences/"+tokGood+"/export", formPreferences, tokGood, nil)
			post("/preferences/"+tokGood+"/erase", formPreferences, tokGood, url.Values{"understand": {"yes"}})
			rec = post("/data/"+tokData, formData, tokData, nil)
			wantBody(t, rec, "Download my data")
			wantHeader(t, rec, "Content-Disposition", "")

			if len(h.subs.prefs) != 0 {
				t.Errorf("preferences saved: %+v", h.subs.prefs)
			}
			for _, call := range []string{"UpdatePreferences", "RequestDataExport", "EraseByToken", "DownloadDataExport"} {
				if n := priv.callsOf(call); n != 0 {
					t.Errorf("%s called %d times", call, n)
				}
			}
			if h.wakeCount() != 0 {
				t.Error("a refused form woke the sender")
			}
		})
	}
}

// TestReaderFormsRoundTrip: the forms work as a browser sends them: the
// token the page wrote, with or without the headers browsers add to a
// same-origin POST from a no-referrer page.
func TestReaderFormsRoundTrip(t *testing.T) {
	for _, headers := range [][]string{
		nil, // a script, or an old browser
		{"Sec-Fetch-Site", "same-origin", "Origin", "null"},
		{"Origin", "null"},                     // no Sec-Fetch-Site: Referrer-Policy no-referrer hides the origin
		{"Origin", "https://news.example.org"}, // the public origin, behind a proxy that rewrites Host
		{"Sec-Fetch-Site", "none"},             // sent again from the browser's history
	} {
		h, priv := newPrivacyHarness(t)
		page := h.get(t, "/preferences/"+tokGood)
		wantStatus(t, page, http.StatusOK)
		// Every form on the page carries the token.
		if n := strings.Count(page.Body.String(), `name="csrf"`); n != 4 {
			t.Errorf("%v: the page has %d csrf fields, want 4 (save, leave, export, erase)", headers, n)
		}
		tok := formTokenIn(t, page.Body.String())
		form := url.Values{"newsletters": {"weekly"}, "name": {"Jane"}, "pause": {"none"}, fieldFormToken: {tok}}
		rec := h.do(t, http.MethodPost, "/preferences/"+tokGood, formType, strings.NewReader(form.Encode()), headers...)
		wantStatus(t, rec, http.StatusOK)
		wantBody(t, rec, noticeSaved)
		if len(h.subs.prefs) != 1 || strings.Join(h.subs.prefs[0].Newsletters, ",") != "weekly" {
			t.Errorf("%v: updates = %+v", headers, h.subs.prefs)
		}
		// The same page's token sends the data forms too.
		rec = h.do(t, http.MethodPost, "/preferences/"+tokGood+"/export", formType,
			strings.NewReader(url.Values{fieldFormToken: {tok}}.Encode()), headers...)
		wantStatus(t, rec, http.StatusOK)
		if priv.callsOf("RequestDataExport") != 1 {
			t.Errorf("%v: export not asked", headers)
		}
		data := h.get(t, "/data/"+tokData)
		rec = h.do(t, http.MethodPost, "/data/"+tokData, formType,
			strings.NewReader(url.Values{fieldFormToken: {formTokenIn(t, data.Body.String())}}.Encode()), headers...)
		wantStatus(t, rec, http.StatusOK)
		wantHeader(t, rec, "Content-Disposition", "attachment; filename=passblue-data-2026-12-06.json")
		rec = h.do(t, http.MethodPost, "/preferences/"+tokGood+"/erase", formType,
			strings.NewReader(url.Values{fieldFormToken: {tok}, "understand": {"yes"}}.Encode()), headers...)
		wantStatus(t, rec, http.StatusOK)
		if priv.callsOf("EraseByToken") != 1 {
			t.Errorf("%v: not erased", headers)
		}
	}
}

// TestReaderFormExpiredThenSent: a page left open past formTokenMaxAge is
// refused once, and the form it comes back with saves.
func TestReaderFormExpiredThenSent(t *testing.T) {
	h := prefsHarness(t)
	tok := formTokenIn(t, h.get(t, "/preferences/"+tokGood).Body.String())
	now := h.srv.now()
	h.srv.now = func() time.Time { return now.Add(formTokenMaxAge + time.Hour) }
	form := url.Values{"newsletters": {"daily", "weekly"}, "pause": {"none"}, fieldFormToken: {tok}}
	rec := h.do(t, http.MethodPost, "/preferences/"+tokGood, formType, strings.NewReader(form.Encode()))
	wantStatus(t, rec, http.StatusForbidden)
	wantBody(t, rec, "<title>Error: Your newsletter preferences", html.EscapeString(errorFormExpired),
		`value="weekly" aria-describedby="nl-1-about" checked>`)
	if len(h.subs.prefs) != 0 {
		t.Fatalf("saved with an expired form: %+v", h.subs.prefs)
	}
	form.Set(fieldFormToken, formTokenIn(t, rec.Body.String()))
	rec = h.do(t, http.MethodPost, "/preferences/"+tokGood, formType, strings.NewReader(form.Encode()))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, noticeSaved)
	if len(h.subs.prefs) != 1 {
		t.Errorf("updates = %+v, want one", h.subs.prefs)
	}
}

// TestReaderFormBadLinkBeforeToken: a forged or expired link is a 404 or
// 410 whatever form token it carries, never a form to fill in.
func TestReaderFormBadLinkBeforeToken(t *testing.T) {
	h, _ := newPrivacyHarness(t)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/preferences/forged", http.StatusNotFound},
		{"/preferences/" + tokExpired, http.StatusGone},
		{"/preferences/forged/erase", http.StatusNotFound},
		{"/preferences/" + tokExpired + "/export", http.StatusGone},
		{"/data/unknown", http.StatusNotFound},
		{"/data/" + tokDataUsed, http.StatusGone},
	} {
		rec := h.do(t, http.MethodPost, tc.path, formType, strings.NewReader("csrf=1.x&understand=yes"))
		wantStatus(t, rec, tc.status)
		wantNoBody(t, rec, `name="csrf"`)
	}
}

// TestOneClickNeedsNoFormToken: the RFC 8058 one-click POST comes from a
// mail provider with no page, cookie or form token, and from another
// origin; it still unsubscribes, and sets no cookie.
func TestOneClickNeedsNoFormToken(t *testing.T) {
	for _, headers := range [][]string{nil, {"Origin", "https://mail.example.com", "Sec-Fetch-Site", "cross-site"}} {
		h := prefsHarness(t)
		rec := h.do(t, http.MethodPost, "/unsubscribe/"+tokGood, formType, strings.NewReader("List-Unsubscribe=One-Click"), headers...)
		wantStatus(t, rec, http.StatusOK)
		wantHeader(t, rec, "Set-Cookie", "")
		if len(h.subs.unsubSrc) != 1 || h.subs.unsubSrc[0] != "one-click" {
			t.Errorf("%v: unsubscribes = %v, want one one-click", headers, h.subs.unsubSrc)
		}
	}
}

// TestResubscribeOfferCarriesFormToken: the "Changed your mind?" button
// posts to the preference page, so it carries a form token for that page.
func TestResubscribeOfferCarriesFormToken(t *testing.T) {
	h := prefsHarness(t)
	h.subs.unsubConfirmed = true
	rec := h.do(t, http.MethodPost, "/unsubscribe/"+tokGood, formType, nil)
	wantStatus(t, rec, http.StatusOK)
	tok := formTokenIn(t, rec.Body.String())
	if got := checkFormToken(h.srv.formKey, formPreferences, "prefs-7", tok, h.srv.now()); got != formOK {
		t.Errorf("the offer's token %q does not pass for its preference page: %d", tok, got)
	}
}

// TestReaderFormMultipart: a form sent as multipart/form-data carries its
// token the same way.
func TestReaderFormMultipart(t *testing.T) {
	h := prefsHarness(t)
	var b strings.Builder
	mw := multipart.NewWriter(&b)
	_ = mw.WriteField("newsletters", "weekly")
	_ = mw.WriteField("pause", "none")
	_ = mw.WriteField(fieldFormToken, h.srv.readerFormToken(formPreferences, tokGood))
	_ = mw.Close()
	rec := h.do(t, http.MethodPost, "/preferences/"+tokGood, mw.FormDataContentType(), strings.NewReader(b.String()))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, noticeSaved)
	if len(h.subs.prefs) != 1 || strings.Join(h.subs.prefs[0].Newsletters, ",") != "weekly" {
		t.Errorf("updates = %+v", h.subs.prefs)
	}
}
