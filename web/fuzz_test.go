package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"herald/subscribers"
)

// FuzzFormToken: whatever a POST carries in its csrf field, only a token
// readerFormToken made for that kind and address passes, spelled exactly
// as it was made.
func FuzzFormToken(f *testing.F) {
	key, err := newFormKey([]byte("fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	s := &Server{formKey: key, now: func() time.Time { return now }}
	good := s.readerFormToken(formPreferences, "tok")
	f.Add(good)
	f.Add("+" + good)
	f.Add("0" + good)
	f.Add(good + "=")
	f.Add("1795340000.")
	f.Add("-1.AAAA")
	f.Fuzz(func(t *testing.T, got string) {
		for _, kind := range []string{formPreferences, formData} {
			if checkFormToken(key, kind, "tok", got, now) != formOK {
				continue
			}
			ts, _, _ := strings.Cut(got, ".")
			if want := ts + "." + formTokenMAC(key, kind, "tok", ts); got != want || kind != formPreferences {
				t.Fatalf("%q passed as a %s token", got, kind)
			}
		}
	})
}

// FuzzReaderForms posts arbitrary bodies, URL-encoded, multipart or
// neither, to every form a reader's link leads to and to the one-click
// unsubscribe: the answer is never a server error, and nothing is saved,
// asked for, erased or downloaded by a body that does not carry a form
// token Herald wrote.
func FuzzReaderForms(f *testing.F) {
	h, priv := newPrivacyHarness(f)
	prefsTok := h.srv.readerFormToken(formPreferences, tokGood)
	dataTok := h.srv.readerFormToken(formData, tokData)
	f.Add(0, "newsletters=daily&name=Jane&pause=2w&csrf="+prefsTok)
	f.Add(0, "action=unsubscribe_all&csrf=1.x")
	f.Add(1, "csrf="+prefsTok)
	f.Add(2, "understand=yes&csrf="+prefsTok)
	f.Add(3, "csrf="+dataTok)
	f.Add(4, "List-Unsubscribe=One-Click")
	f.Add(5, "--b\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n"+prefsTok+"\r\n--b\r\nContent-Disposition: form-data; name=\"newsletters\"\r\n\r\nweekly\r\n--b--\r\n")
	f.Add(10, "newsletters=%ff%fe&name=%0d%0aBcc:x&pause=date&pause_until=99999-01-01&csrf="+prefsTok)
	paths := []string{"/preferences/" + tokGood, "/preferences/" + tokGood + "/export", "/preferences/" + tokGood + "/erase",
		"/data/" + tokData, "/unsubscribe/" + tokGood}
	types := []string{formType, "multipart/form-data; boundary=b", "text/plain"}
	changes := func() int {
		return len(h.subs.prefs) + priv.callsOf("RequestDataExport") + priv.callsOf("EraseByToken") + priv.callsOf("DownloadDataExport")
	}
	f.Fuzz(func(t *testing.T, kind int, body string) {
		if kind < 0 {
			kind = -kind
		}
		path, ct := paths[kind%len(paths)], types[(kind/len(paths))%len(types)]
		before := changes()
		rec := h.do(t, http.MethodPost, path, ct, strings.NewReader(body))
		if rec.Code >= 500 {
			t.Fatalf("POST %s (%s) %q: status %d", path, ct, body, rec.Code)
		}
		if changes() != before && !strings.Contains(body, prefsTok) && !strings.Contains(body, dataTok) {
			t.Fatalf("POST %s (%s) %q changed something without a form token of ours", path, ct, body)
		}
	})
}

// FuzzAdminJSON posts arbitrary bodies to the admin API's routes that read
// one (JSON, and the CSV import as a dry run), over a real SQLite store:
// a body that is not what the route wants is a 4xx with a JSON error,
// never a server error.
func FuzzAdminJSON(f *testing.F) {
	h := newRealHarness(f)
	ctx := context.Background()
	if err := h.subs.Signup(ctx, subscribers.SignupRequest{Email: "jane@example.org", Newsletters: []string{"daily"}}); err != nil {
		f.Fatal(err)
	}
	f.Add(0, []byte(`{"url":"https://passblue.example/a","title":"A","content_markdown":"# x\n\n[y](javascript:alert(1))","published_at":"2026-11-22T09:00:00Z","tags":["a"]}`))
	f.Add(0, []byte(`[{"url":"https://passblue.example/b","title":"B","content_html":"<script>x</script><p>b</p>"}]`))
	f.Add(1, []byte(`{"name":"Jane\r\nBcc: x","status":"unsubscribed","newsletters":["daily","nope"]}`))
	f.Add(2, []byte(`{"email":"x@example.org","reason":"manual"}`))
	f.Add(3, []byte(`{"email":"not an address"}`))
	f.Add(4, []byte("email,name\njane@example.org,Jane\n\"bad,\n"))
	f.Add(0, []byte(`{"url":1e999}`))
	f.Add(1, []byte(`{"status":null,"newsletters":{}}`))
	routes := []struct{ method, path, ct string }{
		{http.MethodPost, "/api/v1/articles", "application/json"},
		{http.MethodPatch, "/api/v1/subscribers/1", "application/json"},
		{http.MethodPost, "/api/v1/suppressions", "application/json"},
		{http.MethodDelete, "/api/v1/suppressions", "application/json"},
		{http.MethodPost, "/api/v1/subscribers/import?dry_run=true", "text/csv"},
	}
	f.Fuzz(func(t *testing.T, route int, body []byte) {
		if route < 0 {
			route = -route
		}
		r := routes[route%len(routes)]
		req := httptest.NewRequest(r.method, r.path, strings.NewReader(string(body)))
		req.Header.Set("Authorization", bearer)
		req.Header.Set("Content-Type", r.ct)
		rec := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: status %d %s", r.method, r.path, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && !strings.Contains(rec.Body.String(), `"error"`) {
			t.Fatalf("%s %s %q: %d without a JSON error: %s", r.method, r.path, body, rec.Code, rec.Body.String())
		}
		if r.method == http.MethodPatch {
			// Names go into mail headers (To): none may hold a line break.
			subs, err := h.subs.FindSubscribers(ctx, subscribers.Filter{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			for _, sub := range subs {
				if strings.ContainsAny(sub.Name, "\r\n\x00\u2028\u2029") {
					t.Fatalf("PATCH %q stored the name %q", body, sub.Name)
				}
			}
		}
	})
}

// FuzzAdminLogin posts arbitrary bodies to the public sign-in form, each
// from its own address so the attempt limit does not end the run early:
// never a server error, a session only for the right password or token,
// and a redirect only ever to Herald's own admin pages (no open redirect
// through next, however it is spelled).
func FuzzAdminLogin(f *testing.F) {
	h := newAdminHarness(f)
	f.Add("password=" + url.QueryEscape(adminPassword) + "&next=%2Fadmin%2Fsubscribers%3Fq%3Dx")
	f.Add("password=" + url.QueryEscape(adminPassword) + "&next=%2F%2Fevil.example%2Fadmin")
	f.Add("password=" + url.QueryEscape(adminPassword) + "&next=%2Fadmin%5C%2Fevil.example")
	f.Add("password=" + url.QueryEscape(adminPassword) + "&next=https%3A%2F%2Fevil.example&carried_form=e30")
	f.Add("token=s3cret-admin-token&next=%2Fadmin%2F..%2F%2Fevil.example")
	f.Add("password=wrong&carried_form=AAAA.BBBB")
	f.Add("password=&token=")
	f.Add("password=" + url.QueryEscape(adminPassword) + "&csrf=1.forged")
	// Bodies without a csrf field get a real sign-in cookie and form token,
	// so that the fuzzer reaches past the token check.
	ck, tok := h.signInToken(f)
	var n atomic.Uint32
	f.Fuzz(func(t *testing.T, body string) {
		i := n.Add(1)
		v, _ := url.ParseQuery(body)
		if !strings.Contains(body, "csrf=") {
			body += "&csrf=" + url.QueryEscape(tok)
		}
		req := httptest.NewRequest(http.MethodPost, "/admin/login", strings.NewReader(body))
		req.Header.Set("Content-Type", formType)
		req.AddCookie(ck)
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1234", byte(i>>16), byte(i>>8), byte(i))
		rec := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: status %d", body, rec.Code)
		}
		if loc := rec.Header().Get("Location"); loc != "" {
			u, err := url.Parse(loc)
			if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/admin") || strings.HasPrefix(loc, "//") {
				t.Fatalf("%q: redirected to %q", body, loc)
			}
		}
		right := v.Get("password") == adminPassword || strings.TrimSpace(v.Get("token")) == "s3cret-admin-token"
		if strings.Contains(rec.Header().Get("Set-Cookie"), adminCookie+"=") && !right {
			t.Fatalf("%q: a session without the password or token", body)
		}
	})
}
