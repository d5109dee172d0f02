package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"herald"
	"herald/subscribers"
)

// Tokens the fake understands.
const (
	tokGood    = "good-token"
	tokUsed    = "used-token"
	tokExpired = "expired-token"
)

// fakeSubs stands in for the subscribers service: it records calls and
// answers from fixed tables.
type fakeSubs struct {
	mu        sync.Mutex
	calls     []string
	signups   []subscribers.SignupRequest
	signupErr error
	confirmed map[string]bool
	confirmIP string
	unsubSrc  []string
	list      []*subscribers.Subscriber
	filters   []subscribers.Filter
	pingErr   error
	// Preference page: the updates received, and whether the subscriber
	// Unsubscribe returns had confirmed once.
	prefs          []subscribers.PreferencesUpdate
	unsubConfirmed bool
}

func newFakeSubs() *fakeSubs { return &fakeSubs{confirmed: map[string]bool{}} }

func (f *fakeSubs) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeSubs) callsOf(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

func (f *fakeSubs) subscriber() *subscribers.Subscriber {
	return &subscribers.Subscriber{ID: 7, Email: "jane@example.org", Status: subscribers.StatusPending, Newsletters: []string{"daily", "weekly"}}
}

func (f *fakeSubs) token(token string) (*subscribers.Subscriber, error) {
	switch token {
	case tokGood:
		if f.confirmed[token] {
			return nil, herald.Errorf(herald.EGONE, "This confirmation link has already been used.")
		}
		return f.subscriber(), nil
	case tokUsed, tokExpired:
		return nil, herald.Errorf(herald.EGONE, "This confirmation link has expired. Please sign up again.")
	}
	return nil, herald.Errorf(herald.ENOTFOUND, "This link is not valid.")
}

func (f *fakeSubs) Signup(_ context.Context, r subscribers.SignupRequest) error {
	f.record("Signup")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signups = append(f.signups, r)
	return f.signupErr
}

func (f *fakeSubs) CheckConfirmToken(_ context.Context, token string) (*subscribers.Subscriber, error) {
	f.record("CheckConfirmToken")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.token(token)
}

func (f *fakeSubs) Confirm(_ context.Context, token, ip string) (*subscribers.Subscriber, error) {
	f.record("Confirm")
	f.mu.Lock()
	defer f.mu.Unlock()
	sub, err := f.token(token)
	if err != nil {
		return nil, err
	}
	f.confirmed[token] = true
	f.confirmIP = ip
	sub.Status = subscribers.StatusActive
	return sub, nil
}

func (f *fakeSubs) CheckUnsubscribeToken(_ context.Context, token string) (*subscribers.Subscriber, error) {
	f.record("CheckUnsubscribeToken")
	f.mu.Lock()
	defer f.mu.Unlock()
	if token == tokGood {
		s := f.subscriber()
		s.Status = subscribers.StatusActive
		return s, nil
	}
	return f.token(token)
}

func (f *fakeSubs) Unsubscribe(_ context.Context, token, source string) (*subscribers.Subscriber, error) {
	f.record("Unsubscribe")
	f.mu.Lock()
	defer f.mu.Unlock()
	if token != tokGood {
		return f.token(token)
	}
	f.unsubSrc = append(f.unsubSrc, source)
	s := f.subscriber()
	s.Status = subscribers.StatusUnsubscribed
	if f.unsubConfirmed {
		s.ConfirmedAt = fakeDate()
	}
	return s, nil
}

func (f *fakeSubs) FindSubscribers(_ context.Context, flt subscribers.Filter) ([]*subscribers.Subscriber, error) {
	f.record("FindSubscribers")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	var out []*subscribers.Subscriber
	for _, s := range f.list {
		if s.ID <= flt.AfterID || (flt.Status != "" && s.Status != flt.Status) ||
			(flt.Query != "" && !strings.HasPrefix(s.Email, flt.Query) && !strings.HasPrefix(s.Name, flt.Query)) {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, nil
}

func (f *fakeSubs) Ping(context.Context) error {
	f.record("Ping")
	return f.pingErr
}

// syncBuffer is a log sink that tests can read while handlers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a Server over a fake service, with its log and wake count.
type harness struct {
	srv   *Server
	subs  *fakeSubs
	arts  *fakeArticles
	digs  *fakeDigests
	log   *syncBuffer
	mu    sync.Mutex
	wakes int
}

func (h *harness) wakeCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wakes
}

func testConfig() Config {
	return Config{
		BaseURL:        "https://news.example.org",
		SiteName:       "PassBlue",
		SiteURL:        "https://passblue.example",
		PrivacyURL:     "https://passblue.example/privacy",
		ConsentText:    "We respect your privacy and take protecting it seriously.",
		ConsentVersion: "2024-01",
		PostalAddress:  "1 UN Plaza, New York, NY",
		Newsletters: []Newsletter{
			{ID: "daily", Name: "The Daily Brief", Description: "The UN in five minutes.", Schedule: "Every weekday morning"},
			{ID: "weekly", Name: "The Week at the UN", Description: "Our best reporting.", Schedule: "Every Saturday"},
		},
		AdminToken: "s3cret-admin-token",
	}
}

func newHarness(t testing.TB, mutate ...func(*Config)) *harness {
	t.Helper()
	cfg := testConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	h := &harness{subs: newFakeSubs(), arts: newFakeArticles(), digs: newFakeDigests(), log: &syncBuffer{}}
	srv, err := New(cfg, Deps{
		Subscribers: h.subs,
		Articles:    h.arts,
		Digests:     h.digs,
		Logger:      slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Wake: func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.wakes++
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = srv
	return h
}

// do sends one request through the real echo handler.
func (h *harness) do(t *testing.T, method, target, contentType string, body io.Reader, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

func (h *harness) get(t *testing.T, target string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	return h.do(t, http.MethodGet, target, "", nil, headers...)
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status = %d, want %d; body:\n%s", rec.Code, want, rec.Body.String())
	}
}

func wantBody(t *testing.T, rec *httptest.ResponseRecorder, fragments ...string) {
	t.Helper()
	body := rec.Body.String()
	for _, f := range fragments {
		if !strings.Contains(body, f) {
			t.Errorf("body lacks %q; body:\n%s", f, body)
		}
	}
}

func wantNoBody(t *testing.T, rec *httptest.ResponseRecorder, fragments ...string) {
	t.Helper()
	body := rec.Body.String()
	for _, f := range fragments {
		if strings.Contains(body, f) {
			t.Errorf("body contains %q; body:\n%s", f, body)
		}
	}
}

func wantHeader(t *testing.T, rec *httptest.ResponseRecorder, name, want string) {
	t.Helper()
	if got := rec.Header().Get(name); got != want {
		t.Errorf("header %s = %q, want %q", name, got, want)
	}
}

// fakeDate is when the fake's preferences subscriber is paused to
// (tokPaused) and when the subscriber Unsubscribe returns confirmed.
func fakeDate() time.Time { return time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC) }

// tokPaused is a preferences token whose subscriber is paused.
const tokPaused = "paused-token"

// prefsSubscriber is the subscriber the preference tokens name: active,
// receiving the daily newsletter only.
func (f *fakeSubs) prefsSubscriber(token string) (*subscribers.Subscriber, error) {
	switch token {
	case tokGood, tokPaused:
		s := &subscribers.Subscriber{ID: 7, Email: "jane@example.org", Name: "Jane", Status: subscribers.StatusActive, Newsletters: []string{"daily"}}
		if token == tokPaused {
			s.PausedUntil = fakeDate()
		}
		return s, nil
	case tokExpired:
		return nil, herald.Errorf(herald.EGONE, "This link has expired. Please use the link from your most recent email.")
	}
	return nil, herald.Errorf(herald.ENOTFOUND, "This link is not valid.")
}

func (f *fakeSubs) CheckPreferencesToken(_ context.Context, token string) (*subscribers.Subscriber, error) {
	f.record("CheckPreferencesToken")
	return f.prefsSubscriber(token)
}

// UpdatePreferences applies p as the service would for an active reader;
// a newsletter "retired" is refused as unknown, standing for the rules
// only the service knows.
func (f *fakeSubs) UpdatePreferences(_ context.Context, token string, p subscribers.PreferencesUpdate) (*subscribers.Subscriber, error) {
	f.record("UpdatePreferences")
	s, err := f.prefsSubscriber(token)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prefs = append(f.prefs, p)
	switch {
	case p.UnsubscribeAll || len(p.Newsletters) == 0:
		s.Status = subscribers.StatusUnsubscribed
		if !p.UnsubscribeAll {
			s.Name = p.Name
		}
	case slices.Contains(p.Newsletters, "retired"):
		return nil, herald.Errorf(herald.EINVALID, "Unknown newsletter: %q.", "retired")
	default:
		s.Newsletters, s.Name, s.PausedUntil = p.Newsletters, p.Name, p.PauseUntil
	}
	return s, nil
}

func (f *fakeSubs) PreferencesToken(id int64) string { return "prefs-" + strconv.FormatInt(id, 10) }
