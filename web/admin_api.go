package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/articles"
	"herald/digest"
	"herald/subscribers"
)

// SubscriberAdmin is the operator's side of subscribers
// (*subscribers.Admin), behind the admin API.
type SubscriberAdmin interface {
	// Get returns one subscriber, or ENOTFOUND.
	Get(ctx context.Context, id int64) (*subscribers.Subscriber, error)
	// Update applies an operator's change: EINVALID naming the field,
	// ECONFLICT when the subscriber's status forbids it, ENOTFOUND.
	Update(ctx context.Context, id int64, u subscribers.AdminUpdate) (*subscribers.Subscriber, error)
	// Each streams the subscribers matching f, ordered by id.
	Each(ctx context.Context, f subscribers.Filter, fn func(*subscribers.Subscriber) error) error
	// ExportCSV streams the subscribers matching f as CSV.
	ExportCSV(ctx context.Context, w io.Writer, f subscribers.Filter) (int, error)
	// Import streams a CSV of subscribers in, as the CLI import does; with
	// dryRun it writes nothing. EINVALID for a file it cannot read at all
	// (no header, no email column).
	Import(ctx context.Context, r io.Reader, opts subscribers.ImportOptions, dryRun bool, reject func(subscribers.Rejection), progress func(rows int)) (subscribers.ImportStats, error)
	// Counts returns how many subscribers each newsletter has by status.
	Counts(ctx context.Context) (map[string]map[subscribers.Status]int, error)
	// Activity returns the last days UTC days of activity, oldest first;
	// EINVALID for a days out of range.
	Activity(ctx context.Context, days int) ([]subscribers.DayActivity, error)
}

// ArticleAdmin is what the admin API asks of the articles service
// (*articles.Service) beyond Articles.
type ArticleAdmin interface {
	// List returns the articles matching f, ordered by id.
	List(ctx context.Context, f articles.Filter) ([]*articles.Article, error)
	// Get returns one article, or ENOTFOUND.
	Get(ctx context.Context, id int64) (*articles.Article, error)
	// Delete deletes one article, or returns ENOTFOUND.
	Delete(ctx context.Context, id int64) error
}

// IssueAdmin is what the admin API asks of the digest service
// (*digest.Service) beyond Digests.
type IssueAdmin interface {
	// ResendFailed queues an issue's failed messages again and returns
	// how many: ENOTFOUND, ECONFLICT while the issue is being built.
	ResendFailed(ctx context.Context, issueID int64) (int, error)
}

// Paging of the issue list, shorter than the others: each issue carries
// its progress counts.
const (
	defaultIssuePage = 20
	maxIssuePage     = 100
)

// subscriberDetailJSON is one subscriber as GET and PATCH
// /api/v1/subscribers/{id} show it.
type subscriberDetailJSON struct {
	subscriberJSON
	UpdatedAt   string  `json:"updated_at"`
	PausedUntil *string `json:"paused_until"`
}

func toDetailJSON(sub *subscribers.Subscriber, now time.Time) subscriberDetailJSON {
	out := subscriberDetailJSON{subscriberJSON: toJSON(sub), UpdatedAt: sub.UpdatedAt.UTC().Format(time.RFC3339)}
	if sub.Paused(now) {
		at := sub.PausedUntil.UTC().Format(time.RFC3339)
		out.PausedUntil = &at
	}
	return out
}

func (s *Server) subscriberAdmin() (SubscriberAdmin, error) {
	if s.subAdmin == nil {
		return nil, notConfigured("subscriber administration")
	}
	return s.subAdmin, nil
}

// handleGetSubscriber shows one subscriber.
func (s *Server) handleGetSubscriber(c echo.Context) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.EBADREQUEST, "The subscriber id must be a whole number from 1 up.")
	}
	sub, err := adm.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toDetailJSON(sub, s.now()))
}

// subscriberPatch is the body of PATCH /api/v1/subscribers/{id}: a field
// left out (or null) is not changed.
type subscriberPatch struct {
	Status      *string   `json:"status"`
	Name        *string   `json:"name"`
	Newsletters *[]string `json:"newsletters"`
}

// handlePatchSubscriber changes a subscriber's status, name or newsletters.
func (s *Server) handlePatchSubscriber(c echo.Context) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.EBADREQUEST, "The subscriber id must be a whole number from 1 up.")
	}
	var in subscriberPatch
	if err := decodeStrict(c, &in, "status, name, newsletters"); err != nil {
		return err
	}
	if in.Status == nil && in.Name == nil && in.Newsletters == nil {
		return herald.Errorf(herald.EINVALID, "Nothing to change: send at least one of status, name, newsletters.")
	}
	u := subscribers.AdminUpdate{Name: in.Name, Newsletters: in.Newsletters}
	if in.Status != nil {
		st := subscribers.Status(*in.Status)
		u.Status = &st
	}
	sub, err := adm.Update(c.Request().Context(), id, u)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toDetailJSON(sub, s.now()))
}

// decodeStrict reads a JSON object body into v: 415 for another content
// type, 400 naming what makes it unreadable (bad JSON, a wrong type, more
// than one value), 422 naming an unknown field; known lists the fields.
func decodeStrict(c echo.Context, v any, known string) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" && !isJSONType(ct) {
		return herald.Errorf(herald.EUNSUPPORTED, "Send the body as application/json.")
	}
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			// encoding/json has no typed error for this one.
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return herald.Errorf(herald.EINVALID, "%s: unknown field; the fields are %s.", clipField(field), known)
		case errors.As(err, &typ) && typ.Field != "":
			field, _, _ := strings.Cut(typ.Field, ".")
			return readError(c, herald.Errorf(herald.EBADREQUEST, "%s: must be %s, not a JSON %s.", field, jsonKind(typ.Type.String()), typ.Value))
		case errors.Is(err, io.EOF):
			return readError(c, herald.Errorf(herald.EBADREQUEST, "The request body is empty: send a JSON object."))
		}
		return readError(c, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return readError(c, herald.Errorf(herald.EBADREQUEST, "The request body must hold one JSON object and nothing after it."))
	}
	return nil
}

func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), echo.MIMEApplicationJSON)
}

// jsonKind names a Go type as JSON says it.
func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "a list of strings"
	case strings.Contains(goType, "int"):
		return "a number"
	case strings.Contains(goType, "bool"):
		return "true or false"
	}
	return "a string"
}

// clipField keeps a client's field name short and printable in a message.
func clipField(f string) string {
	if hasControl(f) {
		return "(unprintable)"
	}
	if len(f) > 40 {
		return f[:40] + "…"
	}
	return f
}

// articleViewJSON is a stored article as the article list shows it.
type articleViewJSON struct {
	ID          int64    `json:"id"`
	URL         string   `json:"url"`
	Title       string   `json:"title"`
	Author      string   `json:"author"`
	Summary     string   `json:"summary"`
	Excerpt     string   `json:"excerpt"`
	PublishedAt string   `json:"published_at"`
	UpdatedAt   string   `json:"updated_at"`
	CreatedAt   string   `json:"created_at"`
	Tags        []string `json:"tags"`
	ImageURL    string   `json:"image_url"`
	Source      string   `json:"source"`
}

// articleDetailJSON is one article with its content, as GET
// /api/v1/articles/{id} shows it.
type articleDetailJSON struct {
	articleViewJSON
	ContentHTML string `json:"content_html"`
	ContentText string `json:"content_text"`
}

type articlePage struct {
	Items      []articleViewJSON `json:"items"`
	NextCursor string            `json:"next_cursor"`
}

func articleView(a *articles.Article) articleViewJSON {
	out := articleViewJSON{
		ID: a.ID, URL: a.URL, Title: a.Title, Author: a.Author, Summary: a.Summary, Excerpt: a.Excerpt,
		PublishedAt: a.PublishedAt.UTC().Format(time.RFC3339),
		UpdatedAt:   a.UpdatedAt.UTC().Format(time.RFC3339),
		CreatedAt:   a.CreatedAt.UTC().Format(time.RFC3339),
		Tags:        a.Tags, ImageURL: a.ImageURL, Source: a.Source,
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	return out
}

func (s *Server) articleAdmin() (ArticleAdmin, error) {
	if s.artAdmin == nil {
		return nil, notConfigured("articles API")
	}
	return s.artAdmin, nil
}

// handleListArticles pages articles by id: tag, source, cursor, limit.
func (s *Server) handleListArticles(c echo.Context) error {
	adm, err := s.articleAdmin()
	if err != nil {
		return err
	}
	f := articles.Filter{}
	limit, err := pageLimit(c, defaultPageSize, maxPageSize)
	if err != nil {
		return err
	}
	if f.AfterID, err = pageCursor(c); err != nil {
		return err
	}
	if f.Tag, err = shortParam(c, "tag", articles.MaxTagLen*4); err != nil {
		return err
	}
	if f.Source, err = shortParam(c, "source", articles.MaxURLLen); err != nil {
		return err
	}
	f.Limit = limit + 1 // one more than asked tells whether there is a next page
	list, err := adm.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	page := articlePage{Items: make([]articleViewJSON, 0, min(len(list), limit))}
	if len(list) > limit {
		list = list[:limit]
		page.NextCursor = encodeCursor(list[limit-1].ID)
	}
	for _, a := range list {
		page.Items = append(page.Items, articleView(a))
	}
	return c.JSON(http.StatusOK, page)
}

// handleGetArticle shows one article with its content.
func (s *Server) handleGetArticle(c echo.Context) error {
	adm, err := s.articleAdmin()
	if err != nil {
		return err
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.EBADREQUEST, "The article id must be a whole number from 1 up.")
	}
	a, err := adm.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, articleDetailJSON{articleViewJSON: articleView(a), ContentHTML: a.ContentHTML, ContentText: a.ContentText})
}

// handleDeleteArticle deletes one article: 204.
func (s *Server) handleDeleteArticle(c echo.Context) error {
	adm, err := s.articleAdmin()
	if err != nil {
		return err
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.EBADREQUEST, "The article id must be a whole number from 1 up.")
	}
	if err := adm.Delete(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// newsletterJSON is one newsletter as GET /api/v1/newsletters shows it.
type newsletterJSON struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Schedule    string       `json:"schedule"`
	Timezone    string       `json:"timezone"`
	NextRun     *string      `json:"next_run"`
	Subscribers statusCounts `json:"subscribers"`
}

// statusCounts counts subscribers by status.
type statusCounts struct {
	Pending      int `json:"pending"`
	Active       int `json:"active"`
	Unsubscribed int `json:"unsubscribed"`
	Bounced      int `json:"bounced"`
	Complained   int `json:"complained"`
}

type newsletterList struct {
	Items []newsletterJSON `json:"items"`
}

// handleListNewsletters lists the configured newsletters with their next
// scheduled run and their subscribers by status.
func (s *Server) handleListNewsletters(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("digest service")
	}
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	counts, err := adm.Counts(c.Request().Context())
	if err != nil {
		return err
	}
	now := s.now()
	nls := s.digests.Newsletters()
	out := newsletterList{Items: make([]newsletterJSON, 0, len(nls))}
	for _, n := range nls {
		j := newsletterJSON{ID: n.ID, Name: n.Name, Description: n.Description, Timezone: "UTC"}
		if n.Schedule != nil {
			j.Schedule, j.Timezone = n.Schedule.Expr(), n.Schedule.Location().String()
			if next := n.Schedule.Next(now); !next.IsZero() {
				at := next.Format(time.RFC3339)
				j.NextRun = &at
			}
		}
		byStatus := counts[n.ID]
		j.Subscribers = statusCounts{
			Pending:      byStatus[subscribers.StatusPending],
			Active:       byStatus[subscribers.StatusActive],
			Unsubscribed: byStatus[subscribers.StatusUnsubscribed],
			Bounced:      byStatus[subscribers.StatusBounced],
			Complained:   byStatus[subscribers.StatusComplained],
		}
		out.Items = append(out.Items, j)
	}
	return c.JSON(http.StatusOK, out)
}

type issuePage struct {
	Items      []issueJSON `json:"items"`
	NextCursor string      `json:"next_cursor"`
}

// handleListIssues pages issues newest first: newsletter, status, cursor,
// limit; each with its delivery progress.
func (s *Server) handleListIssues(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("digest service")
	}
	f := digest.IssueFilter{}
	limit, err := pageLimit(c, defaultIssuePage, maxIssuePage)
	if err != nil {
		return err
	}
	if f.BeforeID, err = pageCursor(c); err != nil {
		return err
	}
	if f.NewsletterID, err = shortParam(c, "newsletter", 64); err != nil {
		return err
	}
	if st := c.QueryParam("status"); st != "" {
		switch digest.IssueStatus(st) {
		case digest.IssueBuilding, digest.IssueSending, digest.IssueSent, digest.IssueEmpty:
			f.Statuses = []digest.IssueStatus{digest.IssueStatus(st)}
		default:
			return herald.Errorf(herald.EINVALID, "status: must be one of building, sending, sent, empty.")
		}
	}
	f.Limit = limit + 1
	ctx := c.Request().Context()
	list, err := s.digests.Issues(ctx, f)
	if err != nil {
		return err
	}
	page := issuePage{Items: make([]issueJSON, 0, min(len(list), limit))}
	if len(list) > limit {
		list = list[:limit]
		page.NextCursor = encodeCursor(list[limit-1].ID)
	}
	for _, iss := range list {
		cur, p, err := s.digests.Follow(ctx, iss)
		if err != nil {
			return fmt.Errorf("progress of issue %d: %w", iss.ID, err)
		}
		page.Items = append(page.Items, issueToJSON(cur, p))
	}
	return c.JSON(http.StatusOK, page)
}

// resendAccepted is the answer to POST /api/v1/issues/{id}/resend-failed.
type resendAccepted struct {
	IssueID  int64  `json:"issue_id"`
	Requeued int    `json:"requeued"`
	URL      string `json:"url"` // where the issue's progress is read
}

// handleResendFailed queues an issue's failed messages again: 202 with how
// many.
func (s *Server) handleResendFailed(c echo.Context) error {
	if s.issueAdmin == nil {
		return notConfigured("digest service")
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.EBADREQUEST, "The issue id must be a whole number from 1 up.")
	}
	n, err := s.issueAdmin.ResendFailed(c.Request().Context(), id)
	if err != nil {
		return err
	}
	if n > 0 {
		s.callWake()
	}
	link := s.prefix + "/api/v1/issues/" + strconv.FormatInt(id, 10)
	return c.JSON(http.StatusAccepted, resendAccepted{IssueID: id, Requeued: n, URL: link})
}

// dayJSON is one day of GET /api/v1/stats.
type dayJSON struct {
	Date          string `json:"date"` // YYYY-MM-DD, UTC
	Signups       int    `json:"signups"`
	Imports       int    `json:"imports"`
	Confirmations int    `json:"confirmations"`
	Unsubscribes  int    `json:"unsubscribes"`
	Bounces       int    `json:"bounces"`
	Complaints    int    `json:"complaints"`
}

type statsJSON struct {
	Days   []dayJSON `json:"days"`
	Totals dayTotals `json:"totals"`
}

type dayTotals struct {
	Signups       int `json:"signups"`
	Imports       int `json:"imports"`
	Confirmations int `json:"confirmations"`
	Unsubscribes  int `json:"unsubscribes"`
	Bounces       int `json:"bounces"`
	Complaints    int `json:"complaints"`
}

// handleStats counts signups, imports, confirmations, unsubscribes,
// bounces and complaints per UTC day over the last days (default 30),
// every day present.
func (s *Server) handleStats(c echo.Context) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	days := 30
	if v := c.QueryParam("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > subscribers.MaxActivityDays {
			return herald.Errorf(herald.EINVALID, "days: must be a whole number from 1 to %d.", subscribers.MaxActivityDays)
		}
		days = n
	}
	act, err := adm.Activity(c.Request().Context(), days)
	if err != nil {
		return err
	}
	out := statsJSON{Days: make([]dayJSON, len(act))}
	for i, d := range act {
		out.Days[i] = dayJSON{
			Date: d.Day.Format(time.DateOnly), Signups: d.Signups, Imports: d.Imports, Confirmations: d.Confirmations,
			Unsubscribes: d.Unsubscribes, Bounces: d.Bounces, Complaints: d.Complaints,
		}
		t := &out.Totals
		t.Signups += d.Signups
		t.Imports += d.Imports
		t.Confirmations += d.Confirmations
		t.Unsubscribes += d.Unsubscribes
		t.Bounces += d.Bounces
		t.Complaints += d.Complaints
	}
	return c.JSON(http.StatusOK, out)
}

// pageLimit reads the limit parameter: def when absent, 1 to max.
func pageLimit(c echo.Context, def, max int) (int, error) {
	l := c.QueryParam("limit")
	if l == "" {
		return def, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > max {
		return 0, herald.Errorf(herald.EINVALID, "limit must be a whole number from 1 to %d.", max)
	}
	return n, nil
}

// pageCursor reads the cursor parameter: 0 when absent.
func pageCursor(c echo.Context) (int64, error) {
	cur := c.QueryParam("cursor")
	if cur == "" {
		return 0, nil
	}
	id, ok := decodeCursor(cur)
	if !ok {
		return 0, herald.Errorf(herald.EBADREQUEST, "cursor is malformed: pass back the next_cursor of the previous page.")
	}
	return id, nil
}

// shortParam reads a free-text query parameter of at most max bytes
// without control characters.
func shortParam(c echo.Context, name string, max int) (string, error) {
	v := strings.TrimSpace(c.QueryParam(name))
	if hasControl(v) {
		return "", herald.Errorf(herald.EINVALID, "%s must not contain control characters.", name)
	}
	if len(v) > max {
		return "", herald.Errorf(herald.EINVALID, "%s is longer than %d characters.", name, max)
	}
	return v, nil
}
