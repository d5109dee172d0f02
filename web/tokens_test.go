package web

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

func TestConfirmPageChangesNothing(t *testing.T) {
	h := newHarness(t)
	rec := h.get(t, "/confirm/"+tokGood)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `<form method="post">`, "Confirm my subscription", "j•••@example.org", "The Daily Brief", "The Week at the UN", `content="noindex, nofollow"`)
	wantHeader(t, rec, "Referrer-Policy", "no-referrer")
	wantHeader(t, rec, "Cache-Control", "no-store")
	if h.subs.callsOf("Confirm") != 0 || h.subs.callsOf("CheckConfirmToken") != 1 {
		t.Errorf("calls = %v; a GET must only look the token up", h.subs.calls)
	}
	if h.wakeCount() != 0 {
		t.Error("GET woke the engine")
	}
}

func TestConfirm(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodPost, "/confirm/"+tokGood, formType, nil)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "You&#39;re subscribed", "The Daily Brief", "Every weekday morning")
	wantHeader(t, rec, "Referrer-Policy", "no-referrer")
	if h.subs.callsOf("Confirm") != 1 || h.subs.confirmIP != "192.0.2.1" {
		t.Errorf("Confirm calls = %d, ip = %q", h.subs.callsOf("Confirm"), h.subs.confirmIP)
	}
	if h.wakeCount() != 1 {
		t.Errorf("wakes = %d, want 1", h.wakeCount())
	}

	// The same link again: used.
	rec = h.do(t, http.MethodPost, "/confirm/"+tokGood, formType, nil)
	wantStatus(t, rec, http.StatusGone)
	wantBody(t, rec, "already been used", `href="/">Sign up again</a>`)
}

func TestConfirmBadTokens(t *testing.T) {
	tests := []struct {
		method, token string
		status        int
		fragments     []string
	}{
		{http.MethodGet, "forged", http.StatusNotFound, []string{"This link is not valid.", "Back to PassBlue"}},
		{http.MethodPost, "forged", http.StatusNotFound, []string{"This link is not valid."}},
		{http.MethodGet, tokExpired, http.StatusGone, []string{"This link has expired", "sign up again", `href="/">Sign up again</a>`}},
		{http.MethodPost, tokUsed, http.StatusGone, []string{"This link has expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.token, func(t *testing.T) {
			h := newHarness(t)
			rec := h.do(t, tt.method, "/confirm/"+tt.token, formType, nil)
			wantStatus(t, rec, tt.status)
			wantHeader(t, rec, "Content-Type", "text/html; charset=UTF-8")
			wantHeader(t, rec, "Referrer-Policy", "no-referrer")
			wantBody(t, rec, tt.fragments...)
			if h.wakeCount() != 0 {
				t.Error("woke the engine")
			}
		})
	}
}

func TestUnsubscribePageChangesNothing(t *testing.T) {
	h := newHarness(t)
	rec := h.get(t, "/unsubscribe/"+tokGood)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Unsubscribe from PassBlue", "j•••@example.org", `<form method="post">`, `<button type="submit" class="button">Unsubscribe</button>`)
	wantNoBody(t, rec, "jane@example.org")
	wantHeader(t, rec, "Referrer-Policy", "no-referrer")
	if h.subs.callsOf("Unsubscribe") != 0 {
		t.Error("a GET unsubscribed")
	}
}

func TestUnsubscribe(t *testing.T) {
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("List-Unsubscribe", "One-Click")
	_ = mw.Close()

	tests := []struct {
		name, contentType, body, source string
	}{
		{"one-click form", formType, "List-Unsubscribe=One-Click", "one-click"},
		{"one-click multipart", mw.FormDataContentType(), mp.String(), "one-click"},
		{"our button", formType, "", "page"},
		{"no content type", "", "", "page"},
		{"something else", "text/plain", "hello", "page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			rec := h.do(t, http.MethodPost, "/unsubscribe/"+tokGood, tt.contentType, strings.NewReader(tt.body))
			wantStatus(t, rec, http.StatusOK)
			wantBody(t, rec, "You have been unsubscribed", "j•••@example.org", `href="/">Sign up again</a>`)
			wantHeader(t, rec, "Location", "")
			wantHeader(t, rec, "Set-Cookie", "")
			wantHeader(t, rec, "Referrer-Policy", "no-referrer")
			if len(h.subs.unsubSrc) != 1 || h.subs.unsubSrc[0] != tt.source {
				t.Errorf("sources = %v, want [%s]", h.subs.unsubSrc, tt.source)
			}
		})
	}
}

func TestUnsubscribeBadTokens(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		h := newHarness(t)
		rec := h.do(t, method, "/unsubscribe/forged", formType, strings.NewReader("List-Unsubscribe=One-Click"))
		wantStatus(t, rec, http.StatusNotFound)
		rec = h.do(t, method, "/unsubscribe/"+tokExpired, formType, strings.NewReader("List-Unsubscribe=One-Click"))
		wantStatus(t, rec, http.StatusGone)
		wantBody(t, rec, "Sign up again")
	}
}

func TestMaskEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"jane@example.org", "j•••@example.org"},
		{"élodie@example.fr", "é•••@example.fr"},
		{"@example.org", "•••@example.org"},
		{"nonsense", "•••"},
	}
	for _, tt := range tests {
		if got := maskEmail(tt.in); got != tt.want {
			t.Errorf("maskEmail(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
