package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"herald/apitokens"
	"herald/articles"
	"herald/delivery"
	"herald/digest"
	"herald/store/sqlite"
	"herald/subscribers"
)

// apiDoc is the parsed OpenAPI document and a router over it.
type apiDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// loadAPIDoc parses and validates the embedded document.
func loadAPIDoc(t testing.TB) *apiDoc {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData([]byte(openAPIDocument))
	if err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &apiDoc{doc: doc, router: router}
}

// check validates a real answer against the document: its status must be
// documented for the route, and its body must match the schema (every
// object in the document is closed: an extra, missing or mistyped field
// fails).
func (d *apiDoc) check(t testing.TB, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	if strings.HasPrefix(rec.Header().Get("Content-Type"), mimeNDJSON) {
		d.checkNDJSON(t, req, rec)
		return
	}
	if err := d.validate(req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Errorf("%s %s -> %d does not match openapi.json: %v\nbody: %.600s", req.Method, req.URL.RequestURI(), rec.Code, err, rec.Body.String())
	}
}

// validate checks one answer against the document.
func (d *apiDoc) validate(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("not in openapi.json: %w", err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  status,
		Header:  header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if status != http.StatusNoContent {
		in.Body = io.NopCloser(bytes.NewReader(body))
	}
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// checkNDJSON validates each line of an NDJSON import report against the
// ImportEvent schema (a streamed format the validator does not decode).
func (d *apiDoc) checkNDJSON(t testing.TB, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	schema := d.doc.Components.Schemas["ImportEvent"].Value
	for i, line := range strings.Split(strings.TrimRight(rec.Body.String(), "\n"), "\n") {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("%s %s: line %d is not JSON: %v", req.Method, req.URL.Path, i+1, err)
			continue
		}
		if err := schema.VisitJSON(v); err != nil {
			t.Errorf("%s %s: line %d does not match ImportEvent: %v\n%s", req.Method, req.URL.Path, i+1, err, line)
		}
	}
}

// realHarness is the Server over the real services on a SQLite file, with
// every API answer checked against openapi.json.
type realHarness struct {
	srv    *Server
	db     *sqlite.DB
	subs   *subscribers.Service
	admin  *subscribers.Admin
	arts   *articles.Service
	digs   *digest.Service
	tokens *apitokens.Service
	doc    *apiDoc
	log    *syncBuffer
	wakes  int
}

func newRealHarness(t testing.TB) *realHarness {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	h := &realHarness{db: db, doc: loadAPIDoc(t), log: &syncBuffer{}}
	h.subs, err = subscribers.NewService(ctx, db, subscribers.Options{Newsletters: []string{"daily", "weekly"}})
	if err != nil {
		t.Fatal(err)
	}
	h.admin = subscribers.NewAdmin(h.subs, db)
	h.arts = articles.NewService(db, articles.Options{})
	daily, err := digest.ParseSchedule("0 7 * * 1-5", "America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	weekly, err := digest.ParseSchedule("0 9 * * 6", "UTC")
	if err != nil {
		t.Fatal(err)
	}
	h.digs, err = digest.NewService(db, db, []digest.Newsletter{
		{ID: "daily", Name: "The Daily Brief", Description: "The UN in five minutes.", Schedule: daily},
		{ID: "weekly", Name: "The Week at the UN", Schedule: weekly},
	}, digest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.digs.Stop) // before the store closes: cleanups run last first
	h.tokens = apitokens.NewService(db, apitokens.Options{})
	logger := slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.srv, err = New(testConfig(), Deps{
		Subscribers: h.subs, Articles: h.arts, Digests: h.digs, Tokens: h.tokens,
		SubscriberAdmin: h.admin, ArticleAdmin: h.arts, IssueAdmin: h.digs,
		Logger: logger, Wake: func() { h.wakes++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// do sends one request with the bootstrap admin token (unless headers
// set Authorization) and checks the answer against openapi.json.
func (h *realHarness) do(t *testing.T, method, target, contentType string, body io.Reader, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	req.Header.Set("Authorization", bearer)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	if strings.HasPrefix(req.URL.Path, "/api/v1/") && rec.Code != http.StatusMethodNotAllowed {
		h.doc.check(t, req, rec)
	}
	return rec
}

func (h *realHarness) get(t *testing.T, target string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	return h.do(t, http.MethodGet, target, "", nil, headers...)
}

func (h *realHarness) json(t *testing.T, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	return h.do(t, method, target, "application/json", strings.NewReader(body), headers...)
}

// importCSV imports rows through the service, active, and returns the ids
// by address.
func (h *realHarness) importCSV(t *testing.T, csv string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	st, err := h.subs.Import(ctx, strings.NewReader(csv), subscribers.ImportOptions{Status: subscribers.StatusActive}, nil, nil)
	if err != nil || st.Rejected > 0 {
		t.Fatalf("import: %+v, %v", st, err)
	}
	ids := map[string]int64{}
	err = h.admin.Each(ctx, subscribers.Filter{}, func(s *subscribers.Subscriber) error {
		ids[s.Email] = s.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("body is not the expected JSON: %v\n%s", err, rec.Body.String())
	}
	return v
}

// wantAPIErr asserts an error answer: status, code, and a message fragment
// (the field it names).
func wantAPIErr(t *testing.T, rec *httptest.ResponseRecorder, status int, code, fragment string) {
	t.Helper()
	wantStatus(t, rec, status)
	got := decode[apiError](t, rec)
	if got.Error.Code != code || !strings.Contains(got.Error.Message, fragment) {
		t.Errorf("error = %+v, want code %s and a message containing %q", got.Error, code, fragment)
	}
}

func TestStoredTokensAndScopes(t *testing.T) {
	h := newRealHarness(t)
	ctx := context.Background()
	_, readTok, err := h.tokens.Create(ctx, "dashboard", apitokens.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	_, writeTok, err := h.tokens.Create(ctx, "cms", apitokens.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	ids := h.importCSV(t, "email\nann@example.org\n")
	patch := fmt.Sprintf("/api/v1/subscribers/%d", ids["ann@example.org"])
	tests := []struct {
		name, method, target, body, token string
		want                              int
	}{
		{"read token reads", http.MethodGet, "/api/v1/subscribers", "", readTok, 200},
		{"read token cannot write", http.MethodPatch, patch, `{"name":"Ann"}`, readTok, 403},
		{"read token cannot delete", http.MethodDelete, "/api/v1/articles/1", "", readTok, 403},
		{"write token writes", http.MethodPatch, patch, `{"name":"Ann"}`, writeTok, 200},
		{"unknown token", http.MethodGet, "/api/v1/subscribers", "", "hrld_nope", 401},
		{"bootstrap token", http.MethodGet, "/api/v1/stats", "", "s3cret-admin-token", 200},
		{"no token for the document", http.MethodGet, "/api/v1/openapi.json", "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := "Bearer " + tt.token
			if tt.token == "" {
				auth = ""
			}
			rec := h.json(t, tt.method, tt.target, tt.body, "Authorization", auth)
			wantStatus(t, rec, tt.want)
			if tt.want == 403 {
				wantAPIErr(t, rec, 403, "forbidden", "only read")
			}
		})
	}
	if _, err := h.tokens.Revoke(ctx, "cms"); err != nil {
		t.Fatal(err)
	}
	rec := h.get(t, "/api/v1/subscribers", "Authorization", "Bearer "+writeTok)
	wantAPIErr(t, rec, 401, "unauthorized", "revoked")
	wantHeader(t, rec, "WWW-Authenticate", "Bearer")
	if strings.Contains(h.log.String(), writeTok) || strings.Contains(h.log.String(), readTok) {
		t.Error("a token reached the log")
	}
}

func TestGetAndPatchSubscriber(t *testing.T) {
	h := newRealHarness(t)
	ctx := context.Background()
	ids := h.importCSV(t, "email,name,newsletters\nann@example.org,Ann,daily\nbob@example.org,,weekly\n")
	// A pending reader who never confirmed.
	if err := h.subs.Signup(ctx, subscribers.SignupRequest{Email: "pat@example.org", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	pat, err := h.db.FindSubscribers(ctx, subscribers.Filter{Query: "pat@", Limit: 1})
	if err != nil || len(pat) != 1 {
		t.Fatal(pat, err)
	}
	ann := fmt.Sprintf("/api/v1/subscribers/%d", ids["ann@example.org"])

	rec := h.get(t, ann)
	wantStatus(t, rec, 200)
	got := decode[map[string]any](t, rec)
	if got["email"] != "ann@example.org" || got["status"] != "active" || got["name"] != "Ann" || got["confirmed_at"] == nil {
		t.Errorf("GET = %v", got)
	}

	// One change at a time, each written and answered.
	rec = h.json(t, http.MethodPatch, ann, `{"name":"Ann Lee","newsletters":["weekly","daily"]}`)
	wantStatus(t, rec, 200)
	wantBody(t, rec, `"name":"Ann Lee"`, `"newsletters":["daily","weekly"]`)
	rec = h.json(t, http.MethodPatch, ann, `{"status":"unsubscribed"}`)
	wantStatus(t, rec, 200)
	wantBody(t, rec, `"status":"unsubscribed"`)
	rec = h.json(t, http.MethodPatch, ann, `{"status":"active"}`)
	wantStatus(t, rec, 200)
	wantBody(t, rec, `"status":"active"`)
	events, err := h.db.SubscriberEvents(ctx, ids["ann@example.org"])
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind+":"+e.Detail)
	}
	want := "import:active name_change:changed newsletters:admin: added weekly unsubscribe:admin resubscribe:admin"
	if strings.Join(kinds, " ") != want {
		t.Errorf("events = %q, want %q", strings.Join(kinds, " "), want)
	}

	tests := []struct {
		name, target, body string
		status             int
		code, fragment     string
	}{
		{"pending cannot be made active", fmt.Sprintf("/api/v1/subscribers/%d", pat[0].ID), `{"status":"active"}`, 409, "conflict", "never confirmed"},
		{"status not allowed", ann, `{"status":"bounced"}`, 422, "invalid", "status"},
		{"unknown newsletter", ann, `{"newsletters":["monthly"]}`, 422, "invalid", "newsletters"},
		{"empty newsletters", ann, `{"newsletters":[]}`, 422, "invalid", "newsletters"},
		{"name with a line break", ann, `{"name":"a\nb"}`, 422, "invalid", "name"},
		{"unknown field", ann, `{"stauts":"active"}`, 422, "invalid", "stauts"},
		{"nothing to change", ann, `{}`, 422, "invalid", "at least one"},
		{"wrong type", ann, `{"newsletters":"daily"}`, 400, "bad_request", "newsletters"},
		{"malformed JSON", ann, `{"name":`, 400, "bad_request", "not valid JSON"},
		{"two values", ann, `{"name":"x"} {}`, 400, "bad_request", "one JSON object"},
		{"empty body", ann, ``, 400, "bad_request", "empty"},
		{"unknown id", "/api/v1/subscribers/999999", `{"name":"x"}`, 404, "not_found", "999999"},
		{"bad id", "/api/v1/subscribers/abc", `{"name":"x"}`, 400, "bad_request", "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantAPIErr(t, h.json(t, http.MethodPatch, tt.target, tt.body), tt.status, tt.code, tt.fragment)
		})
	}
	rec = h.do(t, http.MethodPatch, ann, "text/plain", strings.NewReader(`{"name":"x"}`))
	wantAPIErr(t, rec, 415, "unsupported", "application/json")
	wantAPIErr(t, h.get(t, "/api/v1/subscribers/0"), 400, "bad_request", "id")
	wantAPIErr(t, h.get(t, "/api/v1/subscribers/424242"), 404, "not_found", "424242")

	// Bounced stays suppressed.
	bounceOne(t, h, ids["bob@example.org"])
	wantAPIErr(t, h.json(t, http.MethodPatch, fmt.Sprintf("/api/v1/subscribers/%d", ids["bob@example.org"]), `{"status":"unsubscribed"}`),
		409, "conflict", "suppressed")
}

// bounceOne queues a welcome for a subscriber and settles it bounced, as
// the delivery engine would on a 550.
func bounceOne(t *testing.T, h *realHarness, id int64) {
	t.Helper()
	ctx := context.Background()
	err := h.db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: id, MessageID: fmt.Sprintf("b%d@test", id), CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	settleAll(t, h, delivery.OutcomeBounced)
}

// settleAll claims every due message and settles it with outcome.
// waitBuilt waits for the background build of an issue POST .../issues
// started: until GET /api/v1/issues/{id} no longer says building.
func waitBuilt(t *testing.T, h *realHarness, id int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec := h.get(t, fmt.Sprintf("/api/v1/issues/%d", id))
		wantStatus(t, rec, http.StatusOK)
		if !strings.Contains(rec.Body.String(), `"status":"building"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("issue %d still building after 10 s: %s", id, rec.Body.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func settleAll(t *testing.T, h *realHarness, outcome delivery.Outcome) int {
	t.Helper()
	ctx := context.Background()
	jobs, err := h.db.ClaimMessages(ctx, "test", time.Now().Add(time.Second), time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var res []delivery.Result
	for _, j := range jobs {
		res = append(res, delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: outcome, At: time.Now(), Error: "550 5.1.1 no such user"})
	}
	if err := h.db.SettleMessages(ctx, "test", res); err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

func TestListSubscribersByNewsletter(t *testing.T) {
	h := newRealHarness(t)
	h.importCSV(t, "email,newsletters\nann@example.org,daily\nbob@example.org,weekly\ncy@example.org,daily weekly\n")
	rec := h.get(t, "/api/v1/subscribers?newsletter=weekly&limit=1")
	wantStatus(t, rec, 200)
	page := decode[subscriberPage](t, rec)
	if len(page.Items) != 1 || page.Items[0].Email != "bob@example.org" || page.NextCursor == "" {
		t.Fatalf("page 1 = %+v", page)
	}
	rec = h.get(t, "/api/v1/subscribers?newsletter=weekly&limit=1&cursor="+page.NextCursor)
	page = decode[subscriberPage](t, rec)
	if len(page.Items) != 1 || page.Items[0].Email != "cy@example.org" {
		t.Fatalf("page 2 = %+v", page)
	}
	wantAPIErr(t, h.get(t, "/api/v1/subscribers?newsletter=a%0Ab"), 422, "invalid", "newsletter")
	rec = h.get(t, "/api/v1/subscribers?q=an&status=active&newsletter=daily")
	page = decode[subscriberPage](t, rec)
	if len(page.Items) != 1 || page.Items[0].Email != "ann@example.org" || page.NextCursor != "" {
		t.Errorf("search = %+v", page)
	}
}

func TestArticlesAPI(t *testing.T) {
	h := newRealHarness(t)
	for i, tags := range []string{`["un","climate"]`, `["un"]`, `[]`} {
		body := fmt.Sprintf(`{"url":"https://passblue.example/a%d","title":"Story %d","content_markdown":"Text **%d**","tags":%s}`, i, i, i, tags)
		wantStatus(t, h.json(t, http.MethodPost, "/api/v1/articles", body), 201)
	}
	rec := h.get(t, "/api/v1/articles?tag=un&limit=1")
	wantStatus(t, rec, 200)
	page := decode[articlePage](t, rec)
	if len(page.Items) != 1 || page.Items[0].Title != "Story 0" || page.NextCursor == "" {
		t.Fatalf("page 1 = %+v", page)
	}
	page = decode[articlePage](t, h.get(t, "/api/v1/articles?tag=un&cursor="+page.NextCursor))
	if len(page.Items) != 1 || page.Items[0].Title != "Story 1" || page.NextCursor != "" {
		t.Fatalf("page 2 = %+v", page)
	}
	page = decode[articlePage](t, h.get(t, "/api/v1/articles?source=api"))
	if len(page.Items) != 3 {
		t.Fatalf("by source: %d items", len(page.Items))
	}
	id := page.Items[2].ID
	rec = h.get(t, fmt.Sprintf("/api/v1/articles/%d", id))
	wantStatus(t, rec, 200)
	wantBody(t, rec, `"content_html":"\u003cp\u003eText \u003cstrong\u003e2\u003c/strong\u003e\u003c/p\u003e`)

	wantStatus(t, h.do(t, http.MethodDelete, fmt.Sprintf("/api/v1/articles/%d", id), "", nil), 204)
	wantAPIErr(t, h.get(t, fmt.Sprintf("/api/v1/articles/%d", id)), 404, "not_found", "")
	wantAPIErr(t, h.do(t, http.MethodDelete, fmt.Sprintf("/api/v1/articles/%d", id), "", nil), 404, "not_found", "article")
	wantAPIErr(t, h.do(t, http.MethodDelete, "/api/v1/articles/x", "", nil), 400, "bad_request", "id")
	wantAPIErr(t, h.get(t, "/api/v1/articles?limit=501"), 422, "invalid", "limit")
	wantAPIErr(t, h.get(t, "/api/v1/articles?cursor=!!"), 400, "bad_request", "cursor")
	wantAPIErr(t, h.get(t, "/api/v1/articles?tag=%00"), 422, "invalid", "tag")
	// The upsert route's bad input, validated against the document too.
	wantAPIErr(t, h.json(t, http.MethodPost, "/api/v1/articles", `{"url":"https://x.example/","title":"T","tags":"un"}`), 400, "bad_request", "tags")
	wantAPIErr(t, h.json(t, http.MethodPost, "/api/v1/articles", `{"url":"nope","title":"T"}`), 422, "invalid", "url")
}

func TestNewslettersAndIssues(t *testing.T) {
	h := newRealHarness(t)
	ctx := context.Background()
	h.importCSV(t, "email,newsletters\nann@example.org,daily\nbob@example.org,daily\ncy@example.org,weekly\n")
	if err := h.subs.Signup(ctx, subscribers.SignupRequest{Email: "pat@example.org", Newsletters: []string{"daily"}}); err != nil {
		t.Fatal(err)
	}
	settleAll(t, h, delivery.OutcomeSent) // pat's confirmation

	rec := h.get(t, "/api/v1/newsletters")
	wantStatus(t, rec, 200)
	nls := decode[newsletterList](t, rec)
	if len(nls.Items) != 2 {
		t.Fatalf("newsletters = %+v", nls)
	}
	d := nls.Items[0]
	if d.ID != "daily" || d.Schedule != "0 7 * * 1-5" || d.Timezone != "America/New_York" || d.Subscribers.Active != 2 || d.Subscribers.Pending != 1 {
		t.Errorf("daily = %+v", d)
	}
	next, err := time.Parse(time.RFC3339, *d.NextRun)
	if err != nil || !next.After(time.Now()) || next.In(mustZone(t, "America/New_York")).Hour() != 7 {
		t.Errorf("next_run = %v (%v)", *d.NextRun, err)
	}

	wantStatus(t, h.json(t, http.MethodPost, "/api/v1/articles", `{"url":"https://passblue.example/x","title":"X"}`), 201)
	rec = h.do(t, http.MethodPost, "/api/v1/newsletters/daily/issues", "", nil)
	wantStatus(t, rec, 202)
	iss := decode[issueAccepted](t, rec)
	waitBuilt(t, h, iss.ID)
	if n := settleAll(t, h, delivery.OutcomeFailed); n != 2 {
		t.Fatalf("settled %d messages, want 2", n)
	}
	if err := h.db.SettleIssues(ctx, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	rec = h.get(t, "/api/v1/issues?newsletter=daily&status=sent")
	wantStatus(t, rec, 200)
	list := decode[issuePage](t, rec)
	if len(list.Items) != 1 || list.Items[0].ID != iss.ID || list.Items[0].Failed != 2 || list.Items[0].Status != "sent" {
		t.Fatalf("issues = %+v", list)
	}
	if items := decode[issuePage](t, h.get(t, "/api/v1/issues?status=building")).Items; len(items) != 0 {
		t.Errorf("building issues = %+v", items)
	}

	before := h.wakes
	rec = h.do(t, http.MethodPost, fmt.Sprintf("/api/v1/issues/%d/resend-failed", iss.ID), "", nil)
	wantStatus(t, rec, 202)
	if got := decode[resendAccepted](t, rec); got.Requeued != 2 || got.IssueID != iss.ID {
		t.Errorf("resend = %+v", got)
	}
	if h.wakes != before+1 {
		t.Error("resend did not wake delivery")
	}
	rec = h.get(t, fmt.Sprintf("/api/v1/issues/%d", iss.ID))
	wantBody(t, rec, `"status":"sending"`, `"pending":2`, `"failed":0`)
	jobs, err := h.db.ClaimMessages(ctx, "test", time.Now().Add(time.Second), time.Minute, 10)
	if err != nil || len(jobs) != 2 || jobs[0].Attempts != 1 {
		t.Fatalf("requeued jobs = %+v, %v (attempts reset: want 1 after this claim)", jobs, err)
	}
	rec = h.do(t, http.MethodPost, fmt.Sprintf("/api/v1/issues/%d/resend-failed", iss.ID), "", nil)
	wantStatus(t, rec, 202)
	wantBody(t, rec, `"requeued":0`)

	wantAPIErr(t, h.do(t, http.MethodPost, "/api/v1/issues/9999/resend-failed", "", nil), 404, "not_found", "")
	wantAPIErr(t, h.do(t, http.MethodPost, "/api/v1/issues/x/resend-failed", "", nil), 400, "bad_request", "id")
	wantAPIErr(t, h.get(t, "/api/v1/issues?status=lost"), 422, "invalid", "status")
	wantAPIErr(t, h.get(t, "/api/v1/issues?limit=101"), 422, "invalid", "limit")
	wantAPIErr(t, h.get(t, "/api/v1/issues?cursor=zz"), 400, "bad_request", "cursor")
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestStats(t *testing.T) {
	h := newRealHarness(t)
	ctx := context.Background()
	ids := h.importCSV(t, "email\nann@example.org\nbob@example.org\n")
	if err := h.subs.Signup(ctx, subscribers.SignupRequest{Email: "pat@example.org"}); err != nil {
		t.Fatal(err)
	}
	pat, _ := h.db.FindSubscribers(ctx, subscribers.Filter{Query: "pat@", Limit: 1})
	tok, err := h.subs.IssueConfirmToken(ctx, pat[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.subs.Confirm(ctx, tok, ""); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.json(t, http.MethodPatch, fmt.Sprintf("/api/v1/subscribers/%d", ids["ann@example.org"]), `{"status":"unsubscribed"}`), 200)
	settleAll(t, h, delivery.OutcomeSent)
	bounceOne(t, h, ids["bob@example.org"])

	rec := h.get(t, "/api/v1/stats?days=7")
	wantStatus(t, rec, 200)
	st := decode[statsJSON](t, rec)
	if len(st.Days) != 7 {
		t.Fatalf("%d days, want 7", len(st.Days))
	}
	today := st.Days[6]
	if today.Date != time.Now().UTC().Format(time.DateOnly) {
		t.Errorf("last day %s, want today", today.Date)
	}
	want := dayJSON{Date: today.Date, Signups: 1, Imports: 2, Confirmations: 1, Unsubscribes: 1, Bounces: 1}
	if today != want {
		t.Errorf("today = %+v, want %+v", today, want)
	}
	if st.Days[0].Signups != 0 || st.Totals.Imports != 2 {
		t.Errorf("zero-filled day %+v, totals %+v", st.Days[0], st.Totals)
	}
	if len(decode[statsJSON](t, h.get(t, "/api/v1/stats")).Days) != 30 {
		t.Error("default window is not 30 days")
	}
	for _, q := range []string{"days=0", "days=367", "days=x"} {
		wantAPIErr(t, h.get(t, "/api/v1/stats?"+q), 422, "invalid", "days")
	}
}

func TestExportSubscribers(t *testing.T) {
	h := newRealHarness(t)
	h.importCSV(t, "email,name,newsletters\nann@example.org,=cmd(),daily\nbob@example.org,Bob,weekly\ncy@example.org,Cy,daily\n")
	rec := h.get(t, "/api/v1/subscribers/export?newsletter=daily")
	wantStatus(t, rec, 200)
	wantHeader(t, rec, "Content-Type", "text/csv; charset=utf-8")
	lines := strings.Split(strings.TrimSpace(rec.Body.String()), "\n")
	if len(lines) != 3 || lines[0] != "email,name,newsletters,status,created_at,confirmed_at" ||
		!strings.HasPrefix(lines[1], "ann@example.org,'=cmd(),daily,active,") || !strings.HasPrefix(lines[2], "cy@example.org,Cy,daily,active,") {
		t.Errorf("CSV export:\n%s", rec.Body.String())
	}
	rec = h.get(t, "/api/v1/subscribers/export?format=json&status=active")
	wantStatus(t, rec, 200)
	got := decode[[]subscriberJSON](t, rec)
	if len(got) != 3 || got[1].Email != "bob@example.org" {
		t.Errorf("JSON export = %+v", got)
	}
	rec = h.get(t, "/api/v1/subscribers/export?format=json&status=bounced")
	if got := decode[[]subscriberJSON](t, rec); len(got) != 0 {
		t.Errorf("empty export = %+v", got)
	}
	wantAPIErr(t, h.get(t, "/api/v1/subscribers/export?format=xml"), 422, "invalid", "format")
	wantAPIErr(t, h.get(t, "/api/v1/subscribers/export?status=gone"), 422, "invalid", "status")
}

// TestExportMany: an export longer than one page of the store streams every
// row, in order.
func TestExportMany(t *testing.T) {
	h := newRealHarness(t)
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 2500 {
		fmt.Fprintf(&b, "r%04d@example.org\n", i)
	}
	h.importCSV(t, b.String())
	rec := h.get(t, "/api/v1/subscribers/export")
	lines := strings.Split(strings.TrimSpace(rec.Body.String()), "\n")
	if len(lines) != 2501 || !strings.HasPrefix(lines[2500], "r2499@") {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}
