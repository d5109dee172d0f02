package web

import (
	"net/http"
	"strings"
	"testing"
)

func TestSubscribeCORS(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CORSOrigins = []string{"https://passblue.example"} })

	t.Run("preflight from a listed origin", func(t *testing.T) {
		rec := h.do(t, http.MethodOptions, "/subscribe", "", nil,
			"Origin", "https://passblue.example", "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "content-type")
		wantStatus(t, rec, http.StatusNoContent)
		wantHeader(t, rec, "Access-Control-Allow-Origin", "https://passblue.example")
		wantHeader(t, rec, "Access-Control-Allow-Methods", "POST")
		wantHeader(t, rec, "Access-Control-Allow-Headers", "Content-Type")
		wantHeader(t, rec, "Access-Control-Allow-Credentials", "")
	})
	t.Run("preflight from another origin", func(t *testing.T) {
		rec := h.do(t, http.MethodOptions, "/subscribe", "", nil,
			"Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
		wantStatus(t, rec, http.StatusForbidden)
		wantHeader(t, rec, "Access-Control-Allow-Origin", "")
	})
	t.Run("JSON from a listed origin", func(t *testing.T) {
		rec := h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"jane@example.org"}`),
			"Origin", "https://passblue.example")
		wantStatus(t, rec, http.StatusAccepted)
		wantHeader(t, rec, "Access-Control-Allow-Origin", "https://passblue.example")
		if v := rec.Header().Values("Vary"); !strings.Contains(strings.Join(v, ","), "Origin") {
			t.Errorf("Vary = %q, want Origin", v)
		}
	})
	t.Run("form from another origin still works", func(t *testing.T) {
		before := h.subs.callsOf("Signup")
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "joe@example.org")),
			"Origin", "https://elsewhere.example")
		wantStatus(t, rec, http.StatusOK)
		wantHeader(t, rec, "Access-Control-Allow-Origin", "")
		if h.subs.callsOf("Signup") != before+1 {
			t.Error("the cross-origin form post was not taken")
		}
	})
}

func TestCheckOrigins(t *testing.T) {
	for _, bad := range []string{"*", "https://*.example.org", "passblue.example", "https://passblue.example/", "https://passblue.example/x", "ftp://x.example"} {
		if _, err := checkOrigins([]string{bad}); err == nil {
			t.Errorf("checkOrigins(%q) accepted it", bad)
		}
	}
	if _, err := checkOrigins([]string{"https://passblue.example", "http://localhost:3000"}); err != nil {
		t.Error(err)
	}
	if err := checkFrameAncestors([]string{"'self'; script-src *"}); err == nil {
		t.Error("a source that ends the directive was accepted")
	}
}

func TestFramingAndHSTS(t *testing.T) {
	tests := []struct {
		name      string
		ancestors []string
		wantFA    string
		wantXFO   string
	}{
		{"default", nil, "frame-ancestors 'self';", "SAMEORIGIN"},
		{"news site", []string{"'self'", "https://passblue.example"}, "frame-ancestors 'self' https://passblue.example;", ""},
		{"none", []string{"'none'"}, "frame-ancestors 'none';", "DENY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.FrameAncestors = tt.ancestors })
			for _, rec := range []interface {
				Header() http.Header
			}{
				h.get(t, "/"),
				h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org"))),
			} {
				csp := rec.Header().Get("Content-Security-Policy")
				if !strings.Contains(csp, tt.wantFA) {
					t.Errorf("CSP = %q, want %q", csp, tt.wantFA)
				}
				if got := rec.Header().Get("X-Frame-Options"); got != tt.wantXFO {
					t.Errorf("X-Frame-Options = %q, want %q", got, tt.wantXFO)
				}
				if got := rec.Header().Get("Strict-Transport-Security"); got != hstsValue {
					t.Errorf("HSTS = %q, want %q (base URL is https)", got, hstsValue)
				}
			}
			// Other pages are never framed.
			rec := h.get(t, "/archive")
			wantHeader(t, rec, "X-Frame-Options", "DENY")
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("archive CSP = %q", csp)
			}
		})
	}
	h := newHarness(t, func(c *Config) { c.BaseURL = "http://127.0.0.1:8080" })
	wantHeader(t, h.get(t, "/"), "Strict-Transport-Security", "")
}
