package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// postArticle sends a JSON body to POST /api/v1/articles with the admin
// token.
func (h *harness) postArticle(t *testing.T, body string) *httptest.ResponseRecorder {
	t.Helper()
	return h.do(t, http.MethodPost, "/api/v1/articles", "application/json", strings.NewReader(body), "Authorization", bearer)
}

// wantAPIError checks the JSON error's code and that its message holds
// want.
func wantAPIError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, want string) {
	t.Helper()
	wantStatus(t, rec, status)
	var got apiError
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body = %s: %v", rec.Body.String(), err)
	}
	if got.Error.Code != code || !strings.Contains(got.Error.Message, want) {
		t.Errorf("error = %+v, want code %q and a message with %q", got.Error, code, want)
	}
}

const storyJSON = `{
	"url": "https://PassBlue.example/2025/03/04/security-council/?utm_source=x",
	"title": "  The Security Council  votes ",
	"summary": "A vote, at last.",
	"content_html": "<p>It voted.</p><script>alert(1)</script>",
	"author": "Jane Doe",
	"published_at": "2025-03-04T09:30:00-05:00",
	"tags": ["UN", "Security Council", "un"],
	"image_url": "/img/vote.jpg",
	"image_alt": "Ambassadors raising their hands",
	"unknown_field": {"ignored": true}
}`

func TestPostArticleCreatesThenUpdates(t *testing.T) {
	h := newHarness(t)

	rec := h.postArticle(t, storyJSON)
	wantStatus(t, rec, http.StatusCreated)
	wantHeader(t, rec, "Content-Type", "application/json")
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id":           float64(1),
		"url":          "https://passblue.example/2025/03/04/security-council/",
		"title":        "The Security Council votes",
		"author":       "Jane Doe",
		"excerpt":      "A vote, at last.",
		"published_at": "2025-03-04T14:30:00Z",
		"updated_at":   "2025-03-04T14:30:00Z",
		"image_url":    "https://passblue.example/img/vote.jpg",
		"source":       "api",
		"changed":      true,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if tags, _ := json.Marshal(got["tags"]); string(tags) != `["security council","un"]` {
		t.Errorf("tags = %s", tags)
	}
	if len(got) != len(want)+1 {
		t.Errorf("keys = %v", got)
	}

	// The same article again: known, unchanged, nothing written.
	rec = h.postArticle(t, storyJSON)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `"id":1`, `"changed":false`)

	// An edit, found by its canonical URL.
	rec = h.postArticle(t, strings.Replace(storyJSON, "votes", "vote again", 1))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `"id":1`, `"changed":true`, `"title":"The Security Council vote again"`)

	// A minimal article: no tags is [] and the date defaults.
	rec = h.postArticle(t, `{"url": "https://passblue.example/b", "title": "B"}`)
	wantStatus(t, rec, http.StatusCreated)
	wantBody(t, rec, `"id":2`, `"tags":[]`, `"published_at":"2025-03-04T12:00:00Z"`)
}

func TestPostArticleMarkdown(t *testing.T) {
	h := newHarness(t)
	rec := h.postArticle(t, `{"url": "https://passblue.example/md", "title": "Md",
		"content_markdown": "## Heading\n\nSome **bold** text and a [link](https://un.org)."}`)
	wantStatus(t, rec, http.StatusCreated)
	got := h.arts.lastReceived().ContentHTML
	for _, want := range []string{"<h2", "<strong>bold</strong>", `href="https://un.org"`} {
		if !strings.Contains(got, want) {
			t.Errorf("ContentHTML lacks %q: %s", want, got)
		}
	}
	wantBody(t, rec, "Some bold text")
}

func TestPostArticleInvalid(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string
	}{
		{"no url", `{"title": "T"}`, "url: is required"},
		{"relative url", `{"url": "/a", "title": "T"}`, "url: must be an absolute http or https URL"},
		{"ftp url", `{"url": "ftp://passblue.example/a", "title": "T"}`, "url: must be an absolute http or https URL"},
		{"no title", `{"url": "https://passblue.example/a", "title": "  "}`, "title: is required"},
		{"long title", `{"url": "https://passblue.example/a", "title": "` + strings.Repeat("x", 501) + `"}`, "title: "},
		{"published_at", `{"url": "https://passblue.example/a", "title": "T", "published_at": "yesterday"}`, "published_at: must be an RFC 3339 date and time"},
		{"updated_at", `{"url": "https://passblue.example/a", "title": "T", "updated_at": "2025-13-01T00:00:00Z"}`, "updated_at: must be an RFC 3339"},
		{"date without zone", `{"url": "https://passblue.example/a", "title": "T", "published_at": "2025-03-04T09:30:00"}`, "published_at: "},
		{"both contents", `{"url": "https://passblue.example/a", "title": "T", "content_html": "<p>a</p>", "content_markdown": "a"}`, "content_markdown: send content_html or content_markdown, not both"},
		{"image url", `{"url": "https://passblue.example/a", "title": "T", "image_url": "javascript:alert(1)"}`, "image_url: "},
		{"author", `{"url": "https://passblue.example/a", "title": "T", "author": "` + strings.Repeat("a", 301) + `"}`, "author: "},
		{"too many tags", `{"url": "https://passblue.example/a", "title": "T", "tags": [` + manyTags(21) + `]}`, "tags: "},
		{"huge markdown", `{"url": "https://passblue.example/a", "title": "T", "content_markdown": "` + strings.Repeat("m", 1<<20+1) + `"}`, "content_markdown: must be at most 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			rec := h.postArticle(t, tt.body)
			wantAPIError(t, rec, http.StatusUnprocessableEntity, "invalid", tt.field)
		})
	}
}

func manyTags(n int) string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = `"tag` + string(rune('a'+i)) + `"`
	}
	return strings.Join(tags, ",")
}

func TestPostArticleBadRequest(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"empty", ``, "The request body is empty"},
		{"not JSON", `url=https://a`, "not valid JSON"},
		{"cut short", `{"url": "https://a", "title":`, "ends too early"},
		{"an array", `[{"url": "https://a"}]`, "must be a JSON object"},
		{"two objects", `{"url": "https://a", "title": "T"} {}`, "one JSON object"},
		{"title a number", `{"url": "https://a", "title": 5}`, "title: must be a string"},
		{"published_at a number", `{"url": "https://a", "title": "T", "published_at": 1741080600}`, "published_at: must be a string"},
		{"tags a string", `{"url": "https://a", "title": "T", "tags": "un"}`, "tags: must be a list of strings"},
		{"tags of numbers", `{"url": "https://a", "title": "T", "tags": [1, 2]}`, "tags: must be a list of strings"},
		{"url an object", `{"url": {"href": "https://a"}, "title": "T"}`, "url: must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			rec := h.postArticle(t, tt.body)
			wantAPIError(t, rec, http.StatusBadRequest, "bad_request", tt.want)
			if h.arts.upserts != 0 {
				t.Error("the service was called")
			}
		})
	}

	h := newHarness(t)
	rec := h.do(t, http.MethodPost, "/api/v1/articles", "text/plain", strings.NewReader(storyJSON), "Authorization", bearer)
	wantAPIError(t, rec, http.StatusUnsupportedMediaType, "unsupported", "application/json")

	// No Content-Type at all is taken for JSON.
	rec = h.do(t, http.MethodPost, "/api/v1/articles", "", strings.NewReader(storyJSON), "Authorization", bearer)
	wantStatus(t, rec, http.StatusCreated)
}

func TestPostArticleAuth(t *testing.T) {
	h := newHarness(t)
	for _, auth := range []string{"", "Bearer wrong"} {
		var headers []string
		if auth != "" {
			headers = []string{"Authorization", auth}
		}
		rec := h.do(t, http.MethodPost, "/api/v1/articles", "application/json", strings.NewReader(storyJSON), headers...)
		wantAPIError(t, rec, http.StatusUnauthorized, "unauthorized", "token")
		wantHeader(t, rec, "WWW-Authenticate", "Bearer")
	}
	if h.arts.upserts != 0 {
		t.Error("the service was called without auth")
	}
}

func TestPostArticleBodyLimit(t *testing.T) {
	h := newHarness(t)
	article := func(contentBytes int) string {
		return `{"url": "https://passblue.example/big", "title": "Big", "content_html": "<p>` + strings.Repeat("w", contentBytes) + `</p>"}`
	}

	// Far over the site-wide 64 KiB, under the route's 2 MiB: accepted.
	rec := h.postArticle(t, article(900<<10))
	wantStatus(t, rec, http.StatusCreated)

	// Over 2 MiB, with a Content-Length: refused before reading.
	rec = h.postArticle(t, article(2<<20))
	wantAPIError(t, rec, http.StatusRequestEntityTooLarge, "too_large", "2 MiB")

	// Over 2 MiB, streamed without a length: refused when reading passes it.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/articles", io.MultiReader(strings.NewReader(article(2<<20))))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", bearer)
	rec = httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	wantAPIError(t, rec, http.StatusRequestEntityTooLarge, "too_large", "2 MiB")
	if h.arts.upserts != 1 {
		t.Errorf("upserts = %d, want 1", h.arts.upserts)
	}

	// Every other route keeps the site-wide limit.
	rec = h.do(t, http.MethodPost, "/subscribe", "application/json",
		strings.NewReader(`{"email": "a@b.example", "name": "`+strings.Repeat("n", 100<<10)+`"}`))
	wantAPIError(t, rec, http.StatusRequestEntityTooLarge, "too_large", "64 KiB")
}

func TestPostArticleServiceFailure(t *testing.T) {
	h := newHarness(t)
	h.arts.err = errors.New("database is locked")
	rec := h.postArticle(t, storyJSON)
	wantAPIError(t, rec, http.StatusInternalServerError, "internal", "Something went wrong")
	wantNoBody(t, rec, "locked")
	if !strings.Contains(h.log.String(), "database is locked") {
		t.Error("the cause is not in the log")
	}
}

// newBareServer is a Server built with only the required Deps.
func newBareServer(t *testing.T) *harness {
	t.Helper()
	srv, err := New(testConfig(), Deps{Subscribers: newFakeSubs()})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{srv: srv}
}

func TestContentRoutesNotConfigured(t *testing.T) {
	h := newBareServer(t)
	rec := h.postArticle(t, storyJSON)
	wantAPIError(t, rec, http.StatusServiceUnavailable, "unavailable", "not configured")
	rec = h.do(t, http.MethodPost, "/api/v1/newsletters/daily/issues", "", nil, "Authorization", bearer)
	wantAPIError(t, rec, http.StatusServiceUnavailable, "unavailable", "not configured")
	rec = h.get(t, "/api/v1/issues/1", "Authorization", bearer)
	wantAPIError(t, rec, http.StatusServiceUnavailable, "unavailable", "not configured")
	for _, path := range []string{"/archive", "/archive.atom", "/archive/daily", "/archive/daily/1"} {
		rec = h.get(t, path)
		wantStatus(t, rec, http.StatusServiceUnavailable)
		wantHeader(t, rec, "Cache-Control", "no-store")
		wantBody(t, rec, "not configured")
	}
}
