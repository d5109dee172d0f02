package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"herald/subscribers"
)

// prefsHarness is a harness whose clock stands on 22 November 2026.
func prefsHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	h := newHarness(t, mutate...)
	h.srv.now = func() time.Time { return time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC) }
	return h
}

func (h *harness) postPrefs(t *testing.T, token string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	return h.do(t, http.MethodPost, "/preferences/"+token, formType, h.readerForm(formPreferences, token, form))
}

// wantTokenPage checks what every answer on a preferences URL carries.
func wantTokenPage(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	wantHeader(t, rec, "Referrer-Policy", "no-referrer")
	wantHeader(t, rec, "Cache-Control", "no-store")
	wantHeader(t, rec, "Set-Cookie", "")
	wantHeader(t, rec, "Location", "")
}

func TestPreferencesPageShowsCurrentState(t *testing.T) {
	h := prefsHarness(t)
	rec := h.get(t, "/preferences/"+tokGood)
	wantStatus(t, rec, http.StatusOK)
	wantTokenPage(t, rec)
	wantBody(t, rec,
		`content="noindex, nofollow"`, "Hello Jane.", "j•••@example.org",
		`<legend>Your newsletters</legend>`,
		`value="daily" aria-describedby="nl-0-about" checked>`,
		`value="weekly" aria-describedby="nl-1-about">`,
		"The Week at the UN", "Our best reporting.", "Every Saturday",
		`<input type="text" id="name" name="name" value="Jane"`,
		`<legend>Pause your newsletters</legend>`,
		`id="pause-none" name="pause" value="none" checked>`,
		`value="2w">`, "For 2 weeks (until 6 December)",
		`<input type="date" id="pause-until" name="pause_until" value="" min="2026-11-23" max="2027-11-22"`,
		`<label for="pause-until">`,
		`action="/preferences/good-token"`,
		`<button type="submit" class="button">Save preferences</button>`,
		`<input type="hidden" name="action" value="unsubscribe_all">`,
		"Unsubscribe from everything",
	)
	wantNoBody(t, rec, "jane@example.org", `role="status"`, "paused until")
	if h.subs.callsOf("CheckPreferencesToken") != 1 || h.subs.callsOf("UpdatePreferences") != 0 {
		t.Errorf("calls = %v; a GET only looks the token up", h.subs.calls)
	}

	rec = h.get(t, "/preferences/"+tokPaused)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Your newsletters are paused until Sunday 6 December 2026.",
		`id="pause-date" name="pause" value="date" checked>`, `name="pause_until" value="2026-12-06"`,
		"Not paused: start again now")
	wantNoBody(t, rec, `value="none" checked`)
}

func TestPreferencesSave(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 11, 22+d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		name   string
		form   url.Values
		want   subscribers.PreferencesUpdate
		notice string
		frags  []string
	}{
		{"both newsletters, renamed, paused two weeks",
			url.Values{"newsletters": {"daily", "weekly", "daily"}, "name": {" Jane Doe "}, "pause": {"2w"}},
			subscribers.PreferencesUpdate{Newsletters: []string{"daily", "weekly"}, Name: "Jane Doe", PauseUntil: day(14)},
			"Your preferences are saved.",
			[]string{`value="weekly" aria-describedby="nl-1-about" checked>`, `value="Jane Doe"`, "paused until Sunday 6 December 2026", `value="2026-12-06"`}},
		{"until a date",
			url.Values{"newsletters": {"weekly"}, "pause": {"date"}, "pause_until": {"2027-01-15"}},
			subscribers.PreferencesUpdate{Newsletters: []string{"weekly"}, PauseUntil: time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)},
			"Your preferences are saved.",
			[]string{"paused until Friday 15 January 2027"}},
		{"a date ignored when not chosen",
			url.Values{"newsletters": {"daily"}, "name": {"Jane"}, "pause": {"none"}, "pause_until": {"nonsense"}},
			subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Jane"},
			"Your preferences are saved.", nil},
		{"nothing ticked unsubscribes",
			url.Values{"name": {"Jane"}, "pause": {"none"}},
			subscribers.PreferencesUpdate{Name: "Jane"},
			"You chose no newsletter, so we will send you nothing.",
			[]string{"You are unsubscribed:"}},
		{"unsubscribe from everything",
			url.Values{"action": {"unsubscribe_all"}},
			subscribers.PreferencesUpdate{UnsubscribeAll: true},
			"You are unsubscribed from everything.",
			[]string{"You are unsubscribed:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := prefsHarness(t)
			rec := h.postPrefs(t, tokGood, tt.form)
			wantStatus(t, rec, http.StatusOK)
			wantTokenPage(t, rec)
			wantBody(t, rec, `<p class="standfirst" role="status"><strong>`, tt.notice)
			wantBody(t, rec, tt.frags...)
			if len(h.subs.prefs) != 1 {
				t.Fatalf("updates = %+v, want one", h.subs.prefs)
			}
			got := h.subs.prefs[0]
			if strings.Join(got.Newsletters, " ") != strings.Join(tt.want.Newsletters, " ") || got.Name != tt.want.Name ||
				!got.PauseUntil.Equal(tt.want.PauseUntil) || got.UnsubscribeAll != tt.want.UnsubscribeAll {
				t.Errorf("update = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPreferencesRefusesBadInput(t *testing.T) {
	tests := []struct {
		name  string
		form  url.Values
		frags []string
	}{
		{"unknown newsletters",
			url.Values{"newsletters": {"daily", "sports", "bad\r\nid"}, "name": {"Jane"}},
			[]string{`We do not offer &#34;sports&#34;, &#34;bad\r\nid&#34;: choose from the list.`, `href="#nl-0"`, `id="newsletters-error"`,
				`value="daily" aria-describedby="nl-0-about" checked>`}},
		{"not a date",
			url.Values{"newsletters": {"daily"}, "pause": {"date"}, "pause_until": {"6/12/2026"}},
			[]string{"The pause date is not a valid date", `aria-describedby="pause-until-hint pause-error" aria-invalid="true"`, `value="6/12/2026"`,
				`value="date" checked>`}},
		{"no date",
			url.Values{"newsletters": {"daily"}, "pause": {"date"}},
			[]string{"Enter the date until which to pause"}},
		{"more than a year",
			url.Values{"newsletters": {"daily"}, "pause": {"date"}, "pause_until": {"2027-11-23"}},
			[]string{"at most a year", "Monday 22 November 2027"}},
		{"unknown pause",
			url.Values{"newsletters": {"daily"}, "pause": {"forever"}},
			[]string{"Choose one of the pause options."}},
		{"line break in the name",
			url.Values{"newsletters": {"daily"}, "name": {"Jane\r\nBcc: eve@example.org"}},
			[]string{"Hello Jane.", "The name contains characters that are not allowed", `aria-invalid="true" aria-describedby="name-error"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := prefsHarness(t)
			rec := h.postPrefs(t, tokGood, tt.form)
			wantStatus(t, rec, http.StatusUnprocessableEntity)
			wantTokenPage(t, rec)
			wantBody(t, rec, "<title>Error: Your newsletter preferences", `role="alert"`)
			wantBody(t, rec, tt.frags...)
			wantNoBody(t, rec, `role="status"`)
			if h.subs.callsOf("UpdatePreferences") != 0 {
				t.Error("invalid input reached the service")
			}
		})
	}

	// A rule only the service knows shows above the form.
	h := prefsHarness(t, func(c *Config) {
		c.Newsletters = append(c.Newsletters, Newsletter{ID: "retired", Name: "Retired"})
	})
	rec := h.postPrefs(t, tokGood, url.Values{"newsletters": {"retired"}})
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	wantBody(t, rec, "<li>Unknown newsletter: &#34;retired&#34;.</li>")
}

func TestPreferencesBadTokens(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		h := prefsHarness(t)
		valid := url.Values{"newsletters": {"daily"}}
		invalid := url.Values{"newsletters": {"sports"}}
		for _, tt := range []struct {
			token  string
			form   url.Values
			status int
			frags  []string
		}{
			{"forged", valid, http.StatusNotFound, []string{"This link is not valid."}},
			{"forged", invalid, http.StatusNotFound, []string{"This link is not valid."}},
			{tokExpired, valid, http.StatusGone, []string{"This link has expired", `href="/">Sign up again</a>`}},
			{tokExpired, invalid, http.StatusGone, []string{"This link has expired"}},
		} {
			rec := h.do(t, method, "/preferences/"+tt.token, formType, strings.NewReader(tt.form.Encode()))
			wantStatus(t, rec, tt.status)
			wantTokenPage(t, rec)
			wantBody(t, rec, tt.frags...)
			wantNoBody(t, rec, "sports")
		}
		if len(h.subs.prefs) != 0 {
			t.Errorf("%s: updates saved with bad tokens: %+v", method, h.subs.prefs)
		}
	}
}

func TestPreferencesWantsAForm(t *testing.T) {
	h := prefsHarness(t)
	rec := h.do(t, http.MethodPost, "/preferences/"+tokGood, "application/json", strings.NewReader(`{"newsletters":[]}`))
	wantStatus(t, rec, http.StatusUnsupportedMediaType)
	if len(h.subs.prefs) != 0 {
		t.Error("saved a body that is not a form")
	}
}

func TestUnsubscribedPageOffersToResubscribe(t *testing.T) {
	h := prefsHarness(t)
	h.subs.unsubConfirmed = true
	rec := h.do(t, http.MethodPost, "/unsubscribe/"+tokGood, formType, nil)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Changed your mind?",
		`<form method="post" action="/preferences/prefs-7">`,
		`<input type="hidden" name="newsletters" value="daily">`,
		`<input type="hidden" name="newsletters" value="weekly">`,
		`<button type="submit" class="button">Resubscribe</button>`,
		`<a href="/preferences/prefs-7">choose your newsletters</a>`)
	wantNoBody(t, rec, "Sign up again")

	// Never confirmed: coming back takes a signup and its confirmation.
	h = prefsHarness(t)
	rec = h.do(t, http.MethodPost, "/unsubscribe/"+tokGood, formType, nil)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `href="/">Sign up again</a>`)
	wantNoBody(t, rec, "/preferences/")
}

// samplePreferencesPage is TestTemplates' sample: every error and a notice.
func samplePreferencesPage(s *Server) preferencesPage {
	sub := &subscribers.Subscriber{ID: 1, Email: "a@b.example", Name: "A", Status: subscribers.StatusPending,
		Newsletters: []string{"daily"}, PausedUntil: s.now().AddDate(0, 0, 3)}
	p := s.preferencesPage("t", sub, &preferencesInput{Pause: pauseDate, PauseDate: "x"},
		preferenceErrors{Name: "n", Newsletters: "l", Pause: "p", Form: "f"})
	p.Notice = noticeSaved
	return p
}
