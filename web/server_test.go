package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/labstack/echo/v4"

	"herald/templates"
)

// Every page template parses with the layout and renders with sample data.
func TestTemplates(t *testing.T) {
	p, err := parsePages(templates.FS)
	if err != nil {
		t.Fatalf("parsePages: %v", err)
	}
	h := newHarness(t)
	s := h.srv
	samples := map[string]any{
		pageSignup:       s.signupPage(signupInput{Email: "a@b.example", Offered: true}, fieldErrors{Email: "e", Name: "n", Newsletters: "l", Form: "f"}),
		pageCheckInbox:   checkInboxPage{basePage: s.base("t")},
		pageConfirm:      confirmPage{basePage: s.base("t"), Masked: "a•••@b.example", Newsletters: s.cfg.Newsletters},
		pageSubscribed:   subscribedPage{basePage: s.base("t"), Newsletters: s.cfg.Newsletters},
		pageUnsubscribe:  unsubscribePage{basePage: s.base("t"), Masked: "a•••@b.example", Already: true},
		pageUnsubscribed: unsubscribedPage{basePage: s.base("t"), Masked: "a•••@b.example"},
		pageError:        errorPage{basePage: s.base("t"), Status: 404, Message: "m", LinkURL: "/", LinkText: "x"},
		pageArchive:      sampleArchivePage(s),
		pageArchiveIssue: sampleArchiveIssuePage(s),
		pagePreferences:  samplePreferencesPage(s),
		pageDataExport:   dataExportPage{basePage: s.base("t"), Masked: "a•••@b.example"},
		pageErased:       erasedPage{basePage: s.base("t")},
	}
	names := p.names()
	if len(names) != len(samples) {
		t.Errorf("pages = %v, want one sample per page (%d)", names, len(samples))
	}
	for _, name := range names {
		data, ok := samples[name]
		if !ok {
			t.Errorf("no sample data for %s", name)
			continue
		}
		var buf bytes.Buffer
		if err := p.sets[name].ExecuteTemplate(&buf, "layout", data); err != nil {
			t.Errorf("render %s: %v", name, err)
		}
		if !strings.HasPrefix(buf.String(), "<!doctype html>") || !strings.Contains(buf.String(), "</html>") {
			t.Errorf("%s is not a whole page", name)
		}
	}
}

func TestTemplateErrorNamesTheFile(t *testing.T) {
	layout := `{{define "layout"}}{{template "title" .}}{{template "content" .}}{{end}}`
	good := `{{define "title"}}t{{end}}{{define "content"}}c{{end}}`
	fsys := fstest.MapFS{
		"web/layout.html": {Data: []byte(layout)},
		"web/signup.html": {Data: []byte(good)},
		"web/broken.html": {Data: []byte(`{{define "title"}}{{.Oops}{{end}}`)},
	}
	_, err := parsePages(fsys)
	if err == nil || !strings.Contains(err.Error(), "broken.html") {
		t.Fatalf("err = %v, want one naming broken.html", err)
	}
	delete(fsys, "web/broken.html")
	_, err = parsePages(fsys)
	if err == nil || !strings.Contains(err.Error(), "check_inbox.html") {
		t.Fatalf("err = %v, want one naming a missing page", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		deps Deps
		want string
	}{
		{"no service", func(*Config) {}, Deps{}, "Subscribers"},
		{"relative base URL", func(c *Config) { c.BaseURL = "/news" }, Deps{Subscribers: newFakeSubs()}, "BaseURL"},
		{"bad proxy", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, Deps{Subscribers: newFakeSubs()}, "10.0.0.0/33"},
		{"duplicate newsletter", func(c *Config) { c.Newsletters = append(c.Newsletters, Newsletter{ID: "daily"}) }, Deps{Subscribers: newFakeSubs()}, "daily"},
		{"negative limit", func(c *Config) { c.SignupPerIP = -1 }, Deps{Subscribers: newFakeSubs()}, "SignupPerIP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.cfg(&cfg)
			_, err := New(cfg, tt.deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t)
	rec := h.get(t, "/healthz")
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `{"status":"ok"}`)

	rec = h.get(t, "/readyz")
	wantStatus(t, rec, http.StatusOK)
	if h.subs.callsOf("Ping") != 1 {
		t.Error("readyz did not ping the store")
	}

	h.subs.pingErr = errors.New("connection refused")
	rec = h.get(t, "/readyz")
	wantStatus(t, rec, http.StatusServiceUnavailable)
	wantBody(t, rec, `{"status":"unavailable"}`)
	wantNoBody(t, rec, "refused")
	if !strings.Contains(h.log.String(), "connection refused") {
		t.Error("the cause is not in the log")
	}
}

func TestUnknownRoutes(t *testing.T) {
	h := newHarness(t)

	rec := h.get(t, "/api/v1/nothing-here")
	wantStatus(t, rec, http.StatusNotFound)
	wantHeader(t, rec, "Content-Type", "application/json")
	var got apiError
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Error.Code != "not_found" || got.Error.Message == "" {
		t.Errorf("body = %s", rec.Body.String())
	}

	rec = h.get(t, "/no/such/page")
	wantStatus(t, rec, http.StatusNotFound)
	wantHeader(t, rec, "Content-Type", "text/html; charset=UTF-8")
	wantBody(t, rec, "Not found", "We could not find that page.", `href="https://passblue.example">Back to PassBlue</a>`)

	rec = h.do(t, http.MethodDelete, "/subscribe", "", nil)
	wantStatus(t, rec, http.StatusMethodNotAllowed)
	wantHeader(t, rec, "Allow", "OPTIONS, POST")
	wantBody(t, rec, "cannot be used this way")

	rec = h.do(t, http.MethodPost, "/api/v1/subscribers", "application/json", strings.NewReader("{}"))
	wantStatus(t, rec, http.StatusMethodNotAllowed)
	wantBody(t, rec, `"code":"method_not_allowed"`)
}

func TestPanicIsA500WithoutStack(t *testing.T) {
	h := newHarness(t)
	h.srv.echo.GET("/boom", func(echo.Context) error { panic("kaboom at secret place") })
	h.srv.routes["/boom"] = true
	rec := h.get(t, "/boom")
	wantStatus(t, rec, http.StatusInternalServerError)
	wantHeader(t, rec, "Content-Type", "text/html; charset=UTF-8")
	wantBody(t, rec, "Something went wrong on our side")
	wantNoBody(t, rec, "kaboom", "goroutine", "panic", ".go:")
	id := rec.Header().Get("X-Request-Id")
	if id == "" {
		t.Fatal("no X-Request-Id")
	}
	log := h.log.String()
	for _, want := range []string{"kaboom at secret place", "goroutine", `"request_id":"` + id + `"`, `"status":500`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestRequestLog(t *testing.T) {
	h := newHarness(t)
	rec := h.get(t, "/unsubscribe/"+tokGood+"?utm_source=mail&email=jane@example.org", "X-Request-Id", "abc-123")
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "X-Request-Id", "abc-123")
	_ = h.get(t, "/confirm/forged-secret-token")
	_ = h.get(t, "/nothing/secret-path")
	log := h.log.String()
	for _, want := range []string{`"route":"/unsubscribe/:token"`, `"route":"/confirm/:token"`, `"route":"unmatched"`, `"request_id":"abc-123"`, `"method":"GET"`, `"status":404`, `"duration":`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	for _, never := range []string{tokGood, "utm_source", "jane@", "forged-secret-token", "secret-path", "192.0.2.1"} {
		if strings.Contains(log, never) {
			t.Errorf("log contains %q:\n%s", never, log)
		}
	}

	// A request id that is not a plain token is replaced.
	rec = h.get(t, "/healthz", "X-Request-Id", "evil\" injected=1")
	if got := rec.Header().Get("X-Request-Id"); got == "" || strings.Contains(got, "evil") {
		t.Errorf("X-Request-Id = %q", got)
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	// The signup page may be framed by the news site (TestFramingAndHSTS).
	for _, path := range []string{"/healthz", "/api/v1/subscribers", "/missing"} {
		rec := h.get(t, path)
		wantHeader(t, rec, "X-Content-Type-Options", "nosniff")
		wantHeader(t, rec, "X-Frame-Options", "DENY")
		wantHeader(t, rec, "Referrer-Policy", "same-origin")
		if !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: CSP = %q", path, rec.Header().Get("Content-Security-Policy"))
		}
	}
}

func TestStylesheet(t *testing.T) {
	h := newHarness(t)
	rec := h.get(t, h.srv.cssURL)
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Content-Type", "text/css; charset=utf-8")
	wantHeader(t, rec, "Cache-Control", "public, max-age=31536000, immutable")
	wantBody(t, rec, ":focus-visible", ".hp")
}

func TestBasePathPrefixesLinks(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BaseURL = "https://passblue.example/newsletters/" })
	rec := h.get(t, "/")
	wantBody(t, rec, `action="/newsletters/subscribe"`, `href="/newsletters/static/herald.css?v=`)
}

func TestTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		proxies []string
		remote  string
		xff     string
		want    string
	}{
		{"no proxies: socket", nil, "203.0.113.5:1000", "198.51.100.1", "203.0.113.5"},
		{"trusted proxy", []string{"10.0.0.0/8"}, "10.1.2.3:1000", "198.51.100.1", "198.51.100.1"},
		{"trusted chain", []string{"10.0.0.0/8", "192.0.2.7"}, "10.1.2.3:1000", "6.6.6.6, 198.51.100.1, 192.0.2.7", "198.51.100.1"},
		{"untrusted sender", []string{"10.0.0.0/8"}, "203.0.113.5:1000", "198.51.100.1", "203.0.113.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.TrustedProxies = tt.proxies })
			req := httptest.NewRequest(http.MethodPost, "/confirm/"+tokGood, nil)
			req.RemoteAddr = tt.remote
			req.Header.Set("X-Forwarded-For", tt.xff)
			rec := httptest.NewRecorder()
			h.srv.Handler().ServeHTTP(rec, req)
			wantStatus(t, rec, http.StatusOK)
			if h.subs.confirmIP != tt.want {
				t.Errorf("client IP = %q, want %q", h.subs.confirmIP, tt.want)
			}
		})
	}
}

func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(2)
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.allow("192.0.2.1", now); ok != want {
			t.Fatalf("call %d: allowed = %v, want %v", i+1, ok, want)
		}
	}
	ok, wait := l.allow("192.0.2.1", now)
	if ok || wait <= 0 || wait > 30*time.Second {
		t.Errorf("allow = %v, %v; want a wait of about 30s", ok, wait)
	}
	if got := retryAfterSeconds(wait); got < 1 || got > 30 {
		t.Errorf("Retry-After = %d", got)
	}
	// One IPv6 /64 is one client.
	if ok, _ := l.allow("2001:db8::1", now); !ok {
		t.Fatal("first IPv6 call refused")
	}
	_, _ = l.allow("2001:db8::2", now)
	if ok, _ := l.allow("2001:db8::3", now); ok {
		t.Error("a third address of the same /64 was allowed")
	}
	if ok, _ := l.allow("2001:db8:0:1::1", now); !ok {
		t.Error("another /64 was refused")
	}
	// Half a minute on, one token is back.
	if ok, _ := l.allow("192.0.2.1", now.Add(31*time.Second)); !ok {
		t.Error("no token after 31s")
	}
	if l.size() != 3 {
		t.Errorf("size = %d, want 3", l.size())
	}
	// Idle entries go at the next sweep.
	later := now.Add(2 * time.Minute)
	if ok, _ := l.allow("198.51.100.1", later); !ok {
		t.Error("a new address was refused")
	}
	if l.size() != 1 {
		t.Errorf("after the sweep size = %d, want 1", l.size())
	}
}
