package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"herald"
	"herald/subscribers"
)

// Data export tokens the fake understands.
const (
	tokData     = "data-good"
	tokDataUsed = "data-used"
)

// fakePrivacy is the fake subscribers service with its privacy side.
type fakePrivacy struct {
	*fakeSubs
	pmu          sync.Mutex
	erased       []string // "id source"
	suppressed   map[string]subscribers.Suppression
	requests     int
	requestErr   error
	downloaded   bool
	erasedTokens []string
}

func newFakePrivacy(f *fakeSubs) *fakePrivacy {
	return &fakePrivacy{fakeSubs: f, suppressed: map[string]subscribers.Suppression{}}
}

func fakeDossier(id int64) *subscribers.Dossier {
	at := fakeDate()
	return &subscribers.Dossier{
		Format: subscribers.DossierFormat, ExportedAt: at,
		Subscriber: subscribers.DossierProfile{ID: id, Email: "jane@example.org", Name: "Jane", Status: "active", Newsletters: []string{"daily"}, CreatedAt: at, UpdatedAt: at},
		Consents:   []subscribers.DossierConsent{{ID: 1, CreatedAt: at, IP: "192.0.2.0", UserAgent: "ua", Source: "https://site.example/", TextVersion: "v1", Newsletters: []string{"daily"}}},
		Activity:   []subscribers.DossierEvent{{At: at, Kind: "signup"}},
		Deliveries: []subscribers.DossierDelivery{{ID: 3, Kind: "welcome", MessageID: "m@x.example", Status: "sent", Attempts: 1, CreatedAt: at, UpdatedAt: at, SentAt: &at}},
		Links:      []subscribers.DossierLink{},
	}
}

func (f *fakePrivacy) ExportSubscriber(_ context.Context, id int64) (*subscribers.Dossier, error) {
	f.record("ExportSubscriber")
	if id != 7 {
		return nil, herald.Errorf(herald.ENOTFOUND, "No subscriber has the id %d.", id)
	}
	return fakeDossier(id), nil
}

func (f *fakePrivacy) Erase(_ context.Context, id int64, source string) error {
	f.record("Erase")
	if id != 7 {
		return herald.Errorf(herald.ENOTFOUND, "No subscriber has the id %d.", id)
	}
	f.pmu.Lock()
	defer f.pmu.Unlock()
	f.erased = append(f.erased, strings.Join([]string{"7", source}, " "))
	return nil
}

func fakeHash(email string) []byte {
	h := sha256.Sum256([]byte(strings.ToLower(email)))
	return h[:]
}

func (f *fakePrivacy) Suppress(_ context.Context, email, reason string) (subscribers.Suppression, bool, error) {
	f.record("Suppress")
	if !strings.Contains(email, "@") {
		return subscribers.Suppression{}, false, herald.Errorf(herald.EINVALID, "Please enter a valid email address.")
	}
	f.pmu.Lock()
	defer f.pmu.Unlock()
	key := strings.ToLower(email)
	if e, ok := f.suppressed[key]; ok {
		return e, false, nil
	}
	if reason == "" {
		reason = subscribers.ReasonManual
	}
	e := subscribers.Suppression{Hash: fakeHash(email), Reason: reason, CreatedAt: fakeDate()}
	f.suppressed[key] = e
	return e, true, nil
}

func (f *fakePrivacy) Unsuppress(_ context.Context, email string) error {
	f.record("Unsuppress")
	f.pmu.Lock()
	defer f.pmu.Unlock()
	if _, ok := f.suppressed[strings.ToLower(email)]; !ok {
		return herald.Errorf(herald.ENOTFOUND, "This address is not on the suppression list.")
	}
	delete(f.suppressed, strings.ToLower(email))
	return nil
}

func (f *fakePrivacy) UnsuppressHash(_ context.Context, hash []byte) error {
	f.record("UnsuppressHash")
	f.pmu.Lock()
	defer f.pmu.Unlock()
	for k, e := range f.suppressed {
		if bytes.Equal(e.Hash, hash) {
			delete(f.suppressed, k)
			return nil
		}
	}
	return herald.Errorf(herald.ENOTFOUND, "This address is not on the suppression list.")
}

func (f *fakePrivacy) Suppressions(_ context.Context, after []byte, limit int) ([]subscribers.Suppression, error) {
	f.record("Suppressions")
	f.pmu.Lock()
	defer f.pmu.Unlock()
	var out []subscribers.Suppression
	for _, e := range f.suppressed {
		if bytes.Compare(e.Hash, after) > 0 {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b subscribers.Suppression) int { return bytes.Compare(a.Hash, b.Hash) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fakePrivacy) RequestDataExport(_ context.Context, token string) error {
	f.record("RequestDataExport")
	if _, err := f.prefsSubscriber(token); err != nil {
		return err
	}
	f.pmu.Lock()
	defer f.pmu.Unlock()
	if f.requestErr != nil {
		return f.requestErr
	}
	f.requests++
	if f.requests > 1 {
		return herald.Errorf(herald.ERATELIMIT, "You asked for your data less than an hour ago.")
	}
	return nil
}

func (f *fakePrivacy) CheckDataExportToken(_ context.Context, token string) (*subscribers.Subscriber, error) {
	f.record("CheckDataExportToken")
	f.pmu.Lock()
	defer f.pmu.Unlock()
	switch {
	case token == tokData && !f.downloaded:
		return &subscribers.Subscriber{ID: 7, Email: "jane@example.org", Status: subscribers.StatusActive}, nil
	case token == tokData, token == tokDataUsed:
		return nil, herald.Errorf(herald.EGONE, "This download link has been used already.")
	}
	return nil, herald.Errorf(herald.ENOTFOUND, "This download link is not valid.")
}

func (f *fakePrivacy) DownloadDataExport(ctx context.Context, token string) (*subscribers.Dossier, error) {
	if _, err := f.CheckDataExportToken(ctx, token); err != nil {
		return nil, err
	}
	f.record("DownloadDataExport")
	f.pmu.Lock()
	defer f.pmu.Unlock()
	f.downloaded = true
	return fakeDossier(7), nil
}

func (f *fakePrivacy) EraseByToken(_ context.Context, token string) error {
	f.record("EraseByToken")
	if _, err := f.prefsSubscriber(token); err != nil {
		return err
	}
	f.pmu.Lock()
	defer f.pmu.Unlock()
	f.erasedTokens = append(f.erasedTokens, token)
	return nil
}

// newPrivacyHarness is newHarness over a fake whose service has the privacy
// side.
func newPrivacyHarness(t testing.TB) (*harness, *fakePrivacy) {
	t.Helper()
	h := newHarness(t)
	fp := newFakePrivacy(h.subs)
	srv, err := New(testConfig(), Deps{
		Subscribers: fp,
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
		t.Fatal(err)
	}
	h.srv = srv
	return h, fp
}

const privacyBearer = "Bearer s3cret-admin-token"

func wantPrivacyError(t *testing.T, body []byte, code string) {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("error body = %s, want code %q and a message", body, code)
	}
}

func TestPrivacyAPINeedsAToken(t *testing.T) {
	h, fp := newPrivacyHarness(t)
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/v1/subscribers/7/export", ""},
		{http.MethodDelete, "/api/v1/subscribers/7", ""},
		{http.MethodGet, "/api/v1/suppressions", ""},
		{http.MethodPost, "/api/v1/suppressions", `{"email":"a@example.org"}`},
		{http.MethodDelete, "/api/v1/suppressions", `{"email":"a@example.org"}`},
	} {
		for _, auth := range []string{"", "Bearer wrong"} {
			rec := h.do(t, r.method, r.path, "application/json", strings.NewReader(r.body), "Authorization", auth)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: status %d, want 401", r.method, r.path, auth, rec.Code)
			}
			wantPrivacyError(t, rec.Body.Bytes(), herald.EUNAUTHORIZED)
		}
	}
	for _, call := range []string{"ExportSubscriber", "Erase", "Suppress", "Unsuppress", "Suppressions"} {
		if n := fp.callsOf(call); n != 0 {
			t.Errorf("%s called %d times without a token", call, n)
		}
	}
}

func TestExportSubscriberAPI(t *testing.T) {
	h, _ := newPrivacyHarness(t)
	rec := h.get(t, "/api/v1/subscribers/7/export", "Authorization", privacyBearer)
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Content-Type", "application/json")
	wantHeader(t, rec, "Content-Disposition", `attachment; filename=subscriber-7-2026-12-06.json`)
	wantHeader(t, rec, "Cache-Control", "no-store")
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"format", "exported_at", "subscriber", "consents", "activity", "deliveries", "links", "suppression"} {
		if _, ok := got[key]; !ok {
			t.Errorf("export lacks %q: %s", key, rec.Body.String())
		}
	}
	wantBody(t, rec, `"email": "jane@example.org"`, `"consent_text_version": "v1"`, `"message_id": "m@x.example"`, `"confirmed_at": null`)

	for _, path := range []string{"/api/v1/subscribers/99/export", "/api/v1/subscribers/abc/export", "/api/v1/subscribers/0/export"} {
		rec := h.get(t, path, "Authorization", privacyBearer)
		wantStatus(t, rec, http.StatusNotFound)
		wantPrivacyError(t, rec.Body.Bytes(), herald.ENOTFOUND)
	}
}

func TestEraseSubscriberAPI(t *testing.T) {
	h, fp := newPrivacyHarness(t)
	rec := h.do(t, http.MethodDelete, "/api/v1/subscribers/7", "", nil, "Authorization", privacyBearer)
	wantStatus(t, rec, http.StatusNoContent)
	if rec.Body.Len() != 0 || !slices.Equal(fp.erased, []string{"7 admin"}) {
		t.Errorf("body %q, erased %v", rec.Body.String(), fp.erased)
	}
	rec = h.do(t, http.MethodDelete, "/api/v1/subscribers/99", "", nil, "Authorization", privacyBearer)
	wantStatus(t, rec, http.StatusNotFound)
	wantPrivacyError(t, rec.Body.Bytes(), herald.ENOTFOUND)
}

func TestSuppressionsAPI(t *testing.T) {
	h, fp := newPrivacyHarness(t)
	post := func(body string) *httptest.ResponseRecorder {
		return h.do(t, http.MethodPost, "/api/v1/suppressions", "application/json", strings.NewReader(body), "Authorization", privacyBearer)
	}
	rec := post(`{"email":"Blocked@Example.org","reason":"asked by phone"}`)
	wantStatus(t, rec, http.StatusCreated)
	var entry suppressionJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &entry); err != nil {
		t.Fatal(err)
	}
	if entry.Hash != hex.EncodeToString(fakeHash("blocked@example.org")) || entry.Reason != "asked by phone" || entry.CreatedAt != "2026-12-06T00:00:00Z" {
		t.Errorf("entry = %+v", entry)
	}
	wantNoBody(t, rec, "@")
	wantStatus(t, post(`{"email":"blocked@example.org"}`), http.StatusOK)
	rec = post(`{"email":"nope"}`)
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	wantPrivacyError(t, rec.Body.Bytes(), herald.EINVALID)
	wantStatus(t, post(`{"reason":"x"}`), http.StatusUnprocessableEntity)
	wantStatus(t, post(`{"email":`), http.StatusBadRequest)
	rec = h.do(t, http.MethodPost, "/api/v1/suppressions", "text/plain", strings.NewReader(`{"email":"a@example.org"}`), "Authorization", privacyBearer)
	wantStatus(t, rec, http.StatusUnsupportedMediaType)

	for _, a := range []string{"b@example.org", "c@example.org"} {
		wantStatus(t, post(`{"email":"`+a+`"}`), http.StatusCreated)
	}
	// Paging: one per page, three pages, hashes only.
	var hashes []string
	cursor := ""
	for range 4 {
		rec := h.get(t, "/api/v1/suppressions?limit=1&cursor="+cursor, "Authorization", privacyBearer)
		wantStatus(t, rec, http.StatusOK)
		wantNoBody(t, rec, "@")
		var page suppressionPage
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			hashes = append(hashes, it.Hash)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(hashes) != 3 || !slices.IsSorted(hashes) {
		t.Errorf("paged hashes = %v, want 3 in order", hashes)
	}
	for _, bad := range []string{"?limit=0", "?limit=501", "?cursor=zz"} {
		rec := h.get(t, "/api/v1/suppressions"+bad, "Authorization", privacyBearer)
		if rec.Code != http.StatusUnprocessableEntity && rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s: status %d, want 400 or 422", bad, rec.Code)
		}
	}

	del := func(body string) *httptest.ResponseRecorder {
		return h.do(t, http.MethodDelete, "/api/v1/suppressions", "application/json", strings.NewReader(body), "Authorization", privacyBearer)
	}
	wantStatus(t, del(`{"email":"blocked@example.org"}`), http.StatusNoContent)
	rec = del(`{"email":"blocked@example.org"}`)
	wantStatus(t, rec, http.StatusNotFound)
	wantPrivacyError(t, rec.Body.Bytes(), herald.ENOTFOUND)
	wantStatus(t, del(`{"hash":"`+hex.EncodeToString(fakeHash("b@example.org"))+`"}`), http.StatusNoContent)
	wantStatus(t, del(`{"hash":"not-hex"}`), http.StatusUnprocessableEntity)
	wantStatus(t, del(`{}`), http.StatusUnprocessableEntity)
	wantStatus(t, del(`{"email":"c@example.org","hash":"00"}`), http.StatusUnprocessableEntity)
	if len(fp.suppressed) != 1 {
		t.Errorf("suppressed = %v, want c@ only", fp.suppressed)
	}
	if strings.Contains(h.log.String(), "example.org") {
		t.Errorf("the log holds an address:\n%s", h.log.String())
	}
}

// Without the privacy side the routes answer 503, not a crash.
func TestPrivacyRoutesWithoutPrivacy(t *testing.T) {
	h := newHarness(t)
	rec := h.get(t, "/api/v1/subscribers/7/export", "Authorization", privacyBearer)
	wantStatus(t, rec, http.StatusServiceUnavailable)
	wantPrivacyError(t, rec.Body.Bytes(), herald.EUNAVAILABLE)
	wantStatus(t, h.get(t, "/data/"+tokData), http.StatusServiceUnavailable)
}

// fileSlug names the download after the site.
func TestFileSlug(t *testing.T) {
	for in, want := range map[string]string{"PassBlue": "passblue", "Le Monde diplo!": "le-monde-diplo", "日本": "newsletter", "": "newsletter"} {
		if got := fileSlug(in); got != want {
			t.Errorf("fileSlug(%q) = %q, want %q", in, got, want)
		}
	}
}
