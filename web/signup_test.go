package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"herald"
)

const formType = "application/x-www-form-urlencoded"

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func TestSignupPage(t *testing.T) {
	h := newHarness(t)
	rec := h.get(t, "/")
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Content-Type", "text/html; charset=UTF-8")
	wantHeader(t, rec, "X-Content-Type-Options", "nosniff")
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP = %q", csp)
	}
	wantBody(t, rec,
		`<html lang="en">`,
		`<a class="skip-link" href="#main">`,
		`<main id="main"`,
		"Don&#39;t miss a story",
		"PassBlue",
		`action="/subscribe"`,
		`<label for="email">`,
		`type="email" id="email" name="email"`,
		`autocomplete="email" required`,
		`<label for="name">`,
		`<fieldset class="choices"`,
		`<legend>Choose your newsletters</legend>`,
		`id="nl-0" name="newsletters" value="daily" aria-describedby="nl-0-about" checked`,
		`id="nl-1" name="newsletters" value="weekly" aria-describedby="nl-1-about" checked`,
		"Every weekday morning", "The UN in five minutes.",
		`name="website" value="" tabindex="-1" autocomplete="off"`,
		`<div class="hp" aria-hidden="true">`,
		"We respect your privacy",
		`href="https://passblue.example/privacy"`,
		`data-consent-version="2024-01"`,
		`<button type="submit"`,
		`/static/herald.css?v=`,
		"1 UN Plaza",
	)
	wantNoBody(t, rec, "<script", "style=")
	if h.subs.callsOf("Signup") != 0 {
		t.Error("GET / called Signup")
	}
}

func TestSubscribeForm(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodPost, "/subscribe", formType,
		strings.NewReader(form("email", " jane@example.org ", "name", "Jane Doe", "newsletters", "weekly", "newsletters_offered", "1")),
		"Referer", "https://passblue.example/2025/03/story/?utm_source=x#top",
		"User-Agent", "TestBrowser/1.0")
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Check your inbox")
	if len(h.subs.signups) != 1 {
		t.Fatalf("Signup calls = %d, want 1", len(h.subs.signups))
	}
	got := h.subs.signups[0]
	if got.Email != "jane@example.org" || got.Name != "Jane Doe" || strings.Join(got.Newsletters, ",") != "weekly" {
		t.Errorf("signup = %+v", got)
	}
	if got.IP != "192.0.2.1" {
		t.Errorf("IP = %q, want the socket address 192.0.2.1", got.IP)
	}
	if got.UserAgent != "TestBrowser/1.0" {
		t.Errorf("UserAgent = %q", got.UserAgent)
	}
	if want := "https://passblue.example/2025/03/story/"; got.Source != want {
		t.Errorf("Source = %q, want %q", got.Source, want)
	}
	if h.wakeCount() != 1 {
		t.Errorf("wakes = %d, want 1", h.wakeCount())
	}
}

func TestSubscribeMultipart(t *testing.T) {
	h := newHarness(t)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("email", "jane@example.org")
	_ = mw.WriteField("newsletters", "daily")
	_ = mw.WriteField("newsletters", "weekly")
	_ = mw.Close()
	rec := h.do(t, http.MethodPost, "/subscribe", mw.FormDataContentType(), &body)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Check your inbox")
	if len(h.subs.signups) != 1 || h.subs.signups[0].Source != "form" || len(h.subs.signups[0].Newsletters) != 2 {
		t.Fatalf("signups = %+v", h.subs.signups)
	}
}

// A news site's own form may send only the address: that means every
// newsletter, which the service decides.
func TestSubscribeEmailOnly(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
	wantStatus(t, rec, http.StatusOK)
	if len(h.subs.signups) != 1 || len(h.subs.signups[0].Newsletters) != 0 {
		t.Fatalf("signups = %+v", h.subs.signups)
	}
}

func TestSubscribeJSON(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodPost, "/subscribe", "application/json; charset=utf-8",
		strings.NewReader(`{"email":"jane@example.org","name":"Jane","newsletters":["daily"],"extra":{"ignored":true}}`))
	wantStatus(t, rec, http.StatusAccepted)
	if got, want := strings.TrimSpace(rec.Body.String()), `{"status":"pending"}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	wantHeader(t, rec, "Content-Type", "application/json")
	if len(h.subs.signups) != 1 || h.subs.signups[0].Source != "api" || h.subs.signups[0].Newsletters[0] != "daily" {
		t.Fatalf("signups = %+v", h.subs.signups)
	}
	if h.wakeCount() != 1 {
		t.Errorf("wakes = %d, want 1", h.wakeCount())
	}
}

// The answer must not reveal whether an address was new, pending or active,
// and a bot tripping the honeypot must get the very same page.
func TestSubscribeAnswerIsIdentical(t *testing.T) {
	h := newHarness(t)
	body := form("email", "jane@example.org", "newsletters", "daily", "newsletters_offered", "1")
	var first []byte
	for i := range 3 {
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(body))
		wantStatus(t, rec, http.StatusOK)
		if i == 0 {
			first = rec.Body.Bytes()
		} else if !bytes.Equal(first, rec.Body.Bytes()) {
			t.Fatalf("answer %d differs from the first", i+1)
		}
	}
	rec := h.do(t, http.MethodPost, "/subscribe", formType,
		strings.NewReader(form("email", "jane@example.org", "website", "http://spam.example")))
	wantStatus(t, rec, http.StatusOK)
	if !bytes.Equal(first, rec.Body.Bytes()) {
		t.Fatal("honeypot answer differs from a real one")
	}
	if h.subs.callsOf("Signup") != 3 {
		t.Errorf("Signup calls = %d, want 3 (none for the honeypot)", h.subs.callsOf("Signup"))
	}
}

func TestSubscribeHoneypot(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodPost, "/subscribe", formType,
		strings.NewReader(form("email", "not an address", "website", "x")))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Check your inbox")
	if len(h.subs.calls) != 0 || h.wakeCount() != 0 {
		t.Errorf("calls = %v, wakes = %d; want none", h.subs.calls, h.wakeCount())
	}
}

func TestSubscribeInvalidForm(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		fragments []string
	}{
		{"bad address", form("email", "jane.example.org", "name", "Jane"),
			[]string{`value="jane.example.org"`, `value="Jane"`, `aria-invalid="true" aria-describedby="email-error"`, `id="email-error"`, "valid email address", `href="#email"`}},
		{"empty address", form("email", "  "), []string{"Enter your email address."}},
		{"long address", form("email", strings.Repeat("a", 250)+"@example.org"), []string{"longer than 254"}},
		{"CRLF in address", form("email", "jane@example.org\r\nBcc: x@example.org"), []string{`id="email-error"`, "line breaks"}},
		{"CRLF in name", form("email", "jane@example.org", "name", "Jane\r\nBcc: x@example.org"),
			[]string{`aria-describedby="name-error"`, "The name contains characters"}},
		{"long name", form("email", "jane@example.org", "name", strings.Repeat("é", 101)), []string{"The name is longer than 100 characters."}},
		{"no newsletter ticked", form("email", "jane@example.org", "newsletters_offered", "1"),
			[]string{`aria-describedby="newsletters-error"`, "Choose at least one newsletter.", `value="daily" aria-describedby="nl-0-about">`}},
		{"unknown newsletter", form("email", "jane@example.org", "newsletters", "nope"), []string{"choose from the list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(tt.body))
			wantStatus(t, rec, http.StatusUnprocessableEntity)
			wantBody(t, rec, append([]string{"There is a problem", `role="alert"`, "<form"}, tt.fragments...)...)
			if h.subs.callsOf("Signup") != 0 {
				t.Error("Signup was called with invalid input")
			}
		})
	}
}

func TestSubscribeInvalidJSON(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"bad address", `{"email":"nope"}`, 422, "invalid", "valid email address"},
		{"CRLF in name", `{"email":"jane@example.org","name":"Jane\r\nBcc: x"}`, 422, "invalid", "name"},
		{"syntax", `{"email":`, 400, "bad_request", "not valid JSON"},
		{"garbage", `email=jane`, 400, "bad_request", "not valid JSON"},
		{"wrong type", `{"email":5}`, 400, "bad_request", `"email" must be a string`},
		{"not an object", `["jane@example.org"]`, 400, "bad_request", "must be a JSON object"},
		{"empty", ``, 400, "bad_request", "empty"},
		{"two objects", `{"email":"jane@example.org"}{"email":"joe@example.org"}`, 400, "bad_request", "one JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			rec := h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(tt.body))
			wantStatus(t, rec, tt.status)
			var got apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body is not the JSON error shape: %v\n%s", err, rec.Body.String())
			}
			if got.Error.Code != tt.code || !strings.Contains(got.Error.Message, tt.msg) {
				t.Errorf("error = %+v, want code %s and a message with %q", got.Error, tt.code, tt.msg)
			}
			if h.subs.callsOf("Signup") != 0 {
				t.Error("Signup was called")
			}
		})
	}
}

// What only the service can judge comes back as a 422 above the form.
func TestSubscribeServiceRejects(t *testing.T) {
	h := newHarness(t)
	h.subs.signupErr = herald.Errorf(herald.EINVALID, "Unknown newsletter: \"x\".")
	rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	wantBody(t, rec, "Unknown newsletter", `value="jane@example.org"`)
	if h.wakeCount() != 0 {
		t.Error("woke the engine after a rejected signup")
	}
}

func TestSubscribeServiceFails(t *testing.T) {
	h := newHarness(t)
	h.subs.signupErr = errFake("database is locked")
	rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
	wantStatus(t, rec, http.StatusInternalServerError)
	wantBody(t, rec, "Something went wrong on our side")
	wantNoBody(t, rec, "database is locked")
	if !strings.Contains(h.log.String(), "database is locked") {
		t.Error("the cause is not in the log")
	}
}

// A signup that runs out of time (the store's queue under a flood) is a 503
// with Retry-After, not a 500: the reader may try again, and the form's
// JSON callers can tell overload from breakage.
func TestSubscribeBusy(t *testing.T) {
	h := newHarness(t)
	h.subs.signupErr = fmt.Errorf("signup: write: %w", context.DeadlineExceeded)
	rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
	wantStatus(t, rec, http.StatusServiceUnavailable)
	wantHeader(t, rec, "Retry-After", "30")
	wantBody(t, rec, "very busy")
	wantNoBody(t, rec, "deadline", "Something went wrong")

	rec = h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"jane@example.org"}`))
	wantStatus(t, rec, http.StatusServiceUnavailable)
	wantHeader(t, rec, "Retry-After", "30")
	wantBody(t, rec, `"code":"`+herald.EUNAVAILABLE+`"`)
	if !strings.Contains(h.log.String(), "deadline exceeded") {
		t.Error("the cause is not in the log")
	}
}

// A reader who hangs up mid-signup is no server fault: no 500, no error log.
func TestSubscribeClientGone(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.subs.signupErr = fmt.Errorf("signup: begin: %w", context.Canceled)
	req := httptest.NewRequest(http.MethodPost, "/subscribe", strings.NewReader(form("email", "jane@example.org"))).WithContext(ctx)
	req.Header.Set("Content-Type", formType)
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	if rec.Code == http.StatusInternalServerError {
		t.Errorf("a vanished client got a 500")
	}
	if log := h.log.String(); strings.Contains(log, "request failed") || !strings.Contains(log, `"status":499`) {
		t.Errorf("log should note a 499 and no failure:\n%s", log)
	}
}

type errFake string

func (e errFake) Error() string { return string(e) }

func TestSubscribeTooLarge(t *testing.T) {
	big := form("email", "jane@example.org", "name", strings.Repeat("x", 70<<10))
	t.Run("content-length", func(t *testing.T) {
		h := newHarness(t)
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(big))
		wantStatus(t, rec, http.StatusRequestEntityTooLarge)
		wantBody(t, rec, "too large", "64 KiB")
		if h.subs.callsOf("Signup") != 0 {
			t.Error("Signup called")
		}
	})
	t.Run("streamed", func(t *testing.T) {
		h := newHarness(t)
		// A reader of unknown length: the limit must hold while reading.
		rec := h.do(t, http.MethodPost, "/subscribe", formType, struct{ *strings.Reader }{strings.NewReader(big)})
		wantStatus(t, rec, http.StatusRequestEntityTooLarge)
	})
	t.Run("json", func(t *testing.T) {
		h := newHarness(t)
		rec := h.do(t, http.MethodPost, "/subscribe", "application/json",
			struct{ *strings.Reader }{strings.NewReader(`{"email":"` + strings.Repeat("x", 70<<10) + `"}`)})
		wantStatus(t, rec, http.StatusRequestEntityTooLarge)
		wantBody(t, rec, `"code":"too_large"`)
	})
}

func TestSubscribeUnsupportedType(t *testing.T) {
	for _, ct := range []string{"text/plain", "", "application/xml"} {
		h := newHarness(t)
		rec := h.do(t, http.MethodPost, "/subscribe", ct, strings.NewReader("email=jane@example.org"))
		wantStatus(t, rec, http.StatusUnsupportedMediaType)
		wantBody(t, rec, "application/x-www-form-urlencoded")
	}
}

func TestSubscribeRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SignupPerIP = 3 })
	for range 3 {
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
		wantStatus(t, rec, http.StatusOK)
	}
	rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
	wantStatus(t, rec, http.StatusTooManyRequests)
	if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	wantBody(t, rec, "Too many signups")
	if h.subs.callsOf("Signup") != 3 {
		t.Errorf("Signup calls = %d, want 3", h.subs.callsOf("Signup"))
	}

	// Another client is not affected.
	req := httptest.NewRequest(http.MethodPost, "/subscribe", strings.NewReader(form("email", "joe@example.org")))
	req.Header.Set("Content-Type", formType)
	req.RemoteAddr = "198.51.100.9:4321"
	rec = httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	wantStatus(t, rec, http.StatusOK)
}

func TestSubscribeRateLimitOff(t *testing.T) {
	h := newHarness(t)
	for range 20 {
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
		wantStatus(t, rec, http.StatusOK)
	}
}

func TestConsentSource(t *testing.T) {
	tests := []struct{ referer, want string }{
		{"", "form"},
		{"not a url", "form"},
		{"javascript:alert(1)", "form"},
		{"/relative/page", "form"},
		{"https://passblue.example/a/?q=1#x", "https://passblue.example/a/"},
		{"http://user:pw@passblue.example/b", "http://passblue.example/b"},
		{"https://passblue.example/a\r\nX: y", "form"},
	}
	for _, tt := range tests {
		if got := consentSource(tt.referer, "form"); got != tt.want {
			t.Errorf("consentSource(%q) = %q, want %q", tt.referer, got, tt.want)
		}
	}
}
