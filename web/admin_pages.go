package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/articles"
	"herald/digest"
	"herald/subscribers"
)

// Sizes of the admin pages' lists.
const (
	adminChartDays     = 30
	adminRecentIssues  = 5
	adminPageSize      = 50
	adminIssuesScanned = 200 // issues read to count the window's deliveries
)

// feedLister is what the feeds page asks of the articles service
// (*articles.Service), when Deps.ArticleAdmin provides it.
type feedLister interface {
	// Feeds returns the state and health of every feed polled so far.
	Feeds(ctx context.Context) ([]articles.FeedState, error)
}

// subscriberRecords is what the subscriber page asks of the subscribers
// service (*subscribers.Service) for the consent log, activity and
// deliveries, when Deps.Subscribers provides it.
type subscriberRecords interface {
	// ExportSubscriber returns everything held about one subscriber:
	// ENOTFOUND for an unknown id.
	ExportSubscriber(ctx context.Context, id int64) (*subscribers.Dossier, error)
}

// adminDashboardPage is the admin home: growth, deliverability and counts.
type adminDashboardPage struct {
	adminBase
	Chart          growthChart
	Deliverability deliverability
	Newsletters    []newsletterRow
	Warnings       []string // Config.ServerWarnings
}

// newsletterRow is one newsletter with its readers, next run and latest
// issues.
type newsletterRow struct {
	ID          string
	Name        string
	Description string
	Schedule    string
	NextRun     time.Time
	Counts      statusCounts
	Issues      []issueRow
}

// issueRow is one issue in a list.
type issueRow struct {
	ID        int64
	URL       string
	Subject   string
	Status    string
	CreatedAt time.Time
	Total     int
	Sent      int
	Failed    int
	Percent   int
}

// handleAdminDashboard shows the growth chart, the deliverability panel
// and each newsletter's readers.
func (s *Server) handleAdminDashboard(c echo.Context) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	act, err := adm.Activity(ctx, adminChartDays)
	if err != nil {
		return err
	}
	p := adminDashboardPage{adminBase: s.adminFrame(c, "Dashboard", "Dashboard"), Chart: buildGrowthChart(act),
		Warnings: s.cfg.ServerWarnings}
	var bounces, complaints int
	for _, d := range act {
		bounces += d.Bounces
		complaints += d.Complaints
	}
	sent, err := s.sentSince(ctx, s.now().AddDate(0, 0, -adminChartDays))
	if err != nil {
		return err
	}
	p.Deliverability = buildDeliverability(adminChartDays, sent, bounces, complaints)
	if p.Newsletters, err = s.newsletterRows(ctx, 0); err != nil {
		return err
	}
	return s.renderAdmin(c, http.StatusOK, adminPageDashboard, p)
}

// sentSince counts the digest messages delivered or bounced of the issues
// made since then.
func (s *Server) sentSince(ctx context.Context, since time.Time) (int, error) {
	if s.digests == nil {
		return 0, nil
	}
	list, err := s.digests.Issues(ctx, digest.IssueFilter{Limit: adminIssuesScanned})
	if err != nil {
		return 0, fmt.Errorf("dashboard issues: %w", err)
	}
	n := 0
	for _, iss := range list {
		if iss.CreatedAt.Before(since) {
			break // newest first
		}
		p, err := s.digests.Progress(ctx, iss.ID)
		if err != nil {
			return 0, fmt.Errorf("progress of issue %d: %w", iss.ID, err)
		}
		n += p.Sent + p.Bounced
	}
	return n, nil
}

// newsletterRows lists the newsletters with their counts, next run and up
// to recent issues each.
func (s *Server) newsletterRows(ctx context.Context, recent int) ([]newsletterRow, error) {
	if s.digests == nil {
		return nil, notConfigured("digest service")
	}
	adm, err := s.subscriberAdmin()
	if err != nil {
		return nil, err
	}
	counts, err := adm.Counts(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []newsletterRow
	for _, n := range s.digests.Newsletters() {
		r := newsletterRow{ID: n.ID, Name: n.Name, Description: n.Description}
		if n.Schedule != nil {
			r.Schedule = n.Schedule.String()
			r.NextRun = n.Schedule.Next(now)
		}
		by := counts[n.ID]
		r.Counts = statusCounts{
			Pending: by[subscribers.StatusPending], Active: by[subscribers.StatusActive],
			Unsubscribed: by[subscribers.StatusUnsubscribed], Bounced: by[subscribers.StatusBounced],
			Complained: by[subscribers.StatusComplained],
		}
		if recent > 0 {
			list, err := s.digests.Issues(ctx, digest.IssueFilter{NewsletterID: n.ID, Limit: recent})
			if err != nil {
				return nil, fmt.Errorf("issues of %s: %w", n.ID, err)
			}
			for _, iss := range list {
				row, err := s.issueRow(ctx, iss)
				if err != nil {
					return nil, err
				}
				r.Issues = append(r.Issues, row)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// issueRow is the row of an issue in the newsletters' lists, as it stands
// (see Digests.Follow).
func (s *Server) issueRow(ctx context.Context, iss *digest.Issue) (issueRow, error) {
	cur, p, err := s.digests.Follow(ctx, iss)
	if err != nil {
		return issueRow{}, fmt.Errorf("progress of issue %d: %w", iss.ID, err)
	}
	return s.rowOf(cur, p), nil
}

// rowOf is the row of an issue with that progress.
func (s *Server) rowOf(iss *digest.Issue, p digest.Progress) issueRow {
	return issueRow{
		ID: iss.ID, URL: s.prefix + "/admin/issues/" + strconv.FormatInt(iss.ID, 10), Subject: iss.Subject,
		Status: string(iss.Status), CreatedAt: iss.CreatedAt, Total: p.Total, Sent: p.Sent, Failed: p.Failed,
		Percent: percentDone(iss.Status, p),
	}
}

// percentDone is the share of an issue's messages that are settled. While
// the issue is still being built its total is still growing, so it is at
// most 99: "100%" means every reader's message is queued and settled.
func percentDone(status digest.IssueStatus, p digest.Progress) int {
	pct := 100
	if p.Total > 0 {
		pct = 100 * (p.Total - p.Pending()) / p.Total
	}
	if status == digest.IssueBuilding {
		if p.Total == 0 {
			return 0
		}
		pct = min(pct, 99)
	}
	return pct
}

// adminNewslettersPage lists the newsletters with a "Send now" button each.
type adminNewslettersPage struct {
	adminBase
	Newsletters []newsletterRow
	Error       string // why the last "Send now" did nothing
}

// handleAdminNewsletters lists the newsletters, their next run and recent
// issues.
func (s *Server) handleAdminNewsletters(c echo.Context) error {
	return s.renderNewsletters(c, http.StatusOK, "")
}

func (s *Server) renderNewsletters(c echo.Context, status int, msg string) error {
	rows, err := s.newsletterRows(c.Request().Context(), adminRecentIssues)
	if err != nil {
		return err
	}
	p := adminNewslettersPage{adminBase: s.adminFrame(c, "Newsletters", "Newsletters"), Newsletters: rows, Error: msg}
	return s.renderAdmin(c, status, adminPageNewslets, p)
}

// handleAdminSendNow starts an issue of the newsletter now and shows its
// progress; with nothing new to send, the newsletters page says so.
func (s *Server) handleAdminSendNow(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("digest service")
	}
	id := c.Param("id")
	iss, err := s.digests.StartNow(c.Request().Context(), id)
	switch {
	case herald.IsCode(err, herald.ECONFLICT), herald.IsCode(err, herald.ENOTFOUND):
		return s.renderNewsletters(c, statusOf(herald.ErrorCode(err)), herald.ErrorMessage(err))
	case err != nil:
		return fmt.Errorf("send newsletter now: %w", err)
	}
	s.callWake()
	s.log.InfoContext(c.Request().Context(), "issue started from the admin pages", "issue_id", iss.ID, "request_id", requestID(c))
	return c.Redirect(http.StatusSeeOther, s.prefix+"/admin/issues/"+strconv.FormatInt(iss.ID, 10))
}

// adminIssuePage is one issue: its live progress and its preview.
type adminIssuePage struct {
	adminBase
	Issue       issueRow
	Newsletter  string
	Progress    issueJSON
	Percent     int
	Rate        string // messages settled per second so far
	Done        bool
	ProgressURL string
	ResendURL   string
	Preview     string // a whole HTML document for the sandboxed frame's srcdoc
	Requeued    string // the note after "Resend failed"
}

// handleAdminIssue shows an issue's progress and preview.
func (s *Server) handleAdminIssue(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("digest service")
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.ENOTFOUND, "There is no issue with that id.")
	}
	ctx := c.Request().Context()
	iss, err := s.digests.Issue(ctx, id)
	if err != nil {
		return fmt.Errorf("admin issue %d: %w", id, err)
	}
	iss, prog, err := s.digests.Follow(ctx, iss)
	if err != nil {
		return fmt.Errorf("progress of issue %d: %w", id, err)
	}
	p := adminIssuePage{
		adminBase: s.adminFrame(c, iss.Subject, "Newsletters"), Issue: s.rowOf(iss, prog), Newsletter: s.newsletterOrID(iss.NewsletterID).Name,
		Progress: issueToJSON(iss, prog), Percent: percentDone(iss.Status, prog),
		Done:        iss.Status == digest.IssueSent || iss.Status == digest.IssueEmpty,
		ProgressURL: s.prefix + "/admin/issues/" + strconv.FormatInt(id, 10) + "/progress",
		ResendURL:   s.prefix + "/admin/issues/" + strconv.FormatInt(id, 10) + "/resend-failed",
	}
	if p.Issue.Subject == "" {
		p.Title = "Issue " + strconv.FormatInt(id, 10)
	}
	if n := c.QueryParam("requeued"); n != "" {
		if v, err := strconv.Atoi(n); err == nil {
			p.Requeued = fmt.Sprintf("%d failed messages queued again.", v)
		}
	}
	end := s.now()
	if !iss.CompletedAt.IsZero() {
		end = iss.CompletedAt
	}
	if secs := end.Sub(iss.CreatedAt).Seconds(); secs > 0 {
		p.Rate = strconv.FormatFloat(float64(prog.Total-prog.Pending())/secs, 'f', 1, 64)
	} else {
		p.Rate = "0.0"
	}
	if !p.Done {
		p.Refresh = 2
	}
	if p.Preview, err = s.issuePreview(ctx, iss); err != nil {
		return err
	}
	adminHeaders(c, adminPreviewCSP)
	return s.renderAdmin(c, http.StatusOK, adminPageIssue, p)
}

// issuePreview renders the issue as the public archive shows it, as a
// whole document for a sandboxed frame.
func (s *Server) issuePreview(ctx context.Context, iss *digest.Issue) (string, error) {
	as, err := s.digests.IssueArticles(ctx, iss)
	if err != nil {
		return "", fmt.Errorf("preview of issue %d: %w", iss.ID, err)
	}
	nl := s.newsletterOrID(iss.NewsletterID)
	loc := locationOf(nl)
	p := archiveIssuePage{
		Newsletter: nl.Name, Description: nl.Description,
		NewsletterURL: s.prefix + newsletterArchivePath(nl.ID), Subject: subjectOf(iss, nl),
		Date: dateOf(issueDate(iss), loc), SignupURL: s.prefix + "/",
		FeedURL: s.prefix + newsletterArchivePath(nl.ID) + ".atom",
	}
	p.basePage = s.base(p.Subject)
	p.NoIndex = true
	for i, a := range as {
		st := archiveStory{Index: i, Title: a.Title, URL: a.URL, Author: a.Author, ImageURL: a.ImageURL, ImageAlt: a.ImageAlt, Excerpt: a.Excerpt}
		if !a.PublishedAt.IsZero() {
			st.Date = dateOf(a.PublishedAt, loc)
		}
		p.Stories = append(p.Stories, st)
	}
	var buf bytes.Buffer
	if err := s.pages.sets[pageArchiveIssue].ExecuteTemplate(&buf, "layout", p); err != nil {
		return "", fmt.Errorf("preview of issue %d: %w", iss.ID, err)
	}
	return buf.String(), nil
}

// handleAdminIssueProgress answers the issue page's script: the issue's
// progress as the API's GET /api/v1/issues/{id} shows it.
func (s *Server) handleAdminIssueProgress(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("digest service")
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.ENOTFOUND, "There is no issue with that id.")
	}
	ctx := c.Request().Context()
	iss, err := s.digests.Issue(ctx, id)
	if err != nil {
		return fmt.Errorf("admin issue %d: %w", id, err)
	}
	iss, p, err := s.digests.Follow(ctx, iss)
	if err != nil {
		return fmt.Errorf("progress of issue %d: %w", id, err)
	}
	return c.JSON(http.StatusOK, issueToJSON(iss, p))
}

// handleAdminResendFailed queues the issue's failed messages again.
func (s *Server) handleAdminResendFailed(c echo.Context) error {
	if s.issueAdmin == nil {
		return notConfigured("digest service")
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.ENOTFOUND, "There is no issue with that id.")
	}
	n, err := s.issueAdmin.ResendFailed(c.Request().Context(), id)
	if err != nil {
		return err
	}
	if n > 0 {
		s.callWake()
	}
	return c.Redirect(http.StatusSeeOther, s.prefix+"/admin/issues/"+strconv.FormatInt(id, 10)+"?requeued="+strconv.Itoa(n))
}

// adminSubscribersPage is the subscriber search.
type adminSubscribersPage struct {
	adminBase
	Query    string
	Status   string
	Statuses []string
	Results  []subscriberRow
	Searched bool
	NextURL  string
}

// subscriberRow is one search result.
type subscriberRow struct {
	ID          int64
	URL         string
	Email       string
	Name        string
	Status      string
	Newsletters string
	CreatedAt   time.Time
}

var allStatuses = []string{
	string(subscribers.StatusPending), string(subscribers.StatusActive), string(subscribers.StatusUnsubscribed),
	string(subscribers.StatusBounced), string(subscribers.StatusComplained),
}

// handleAdminSubscribers searches subscribers by address or name prefix
// and status.
func (s *Server) handleAdminSubscribers(c echo.Context) error {
	f, err := subscriberFilter(c)
	if err != nil {
		return err
	}
	p := adminSubscribersPage{
		adminBase: s.adminFrame(c, "Subscribers", "Subscribers"),
		Query:     f.Query, Status: string(f.Status), Statuses: allStatuses,
		Searched: c.QueryParam("q") != "" || c.QueryParam("status") != "",
	}
	limit := min(f.Limit, adminPageSize)
	f.Limit = limit + 1
	subs, err := s.subs.FindSubscribers(c.Request().Context(), f)
	if err != nil {
		return err
	}
	if len(subs) > limit {
		subs = subs[:limit]
		q := url.Values{"cursor": {encodeCursor(subs[limit-1].ID)}}
		if f.Query != "" {
			q.Set("q", f.Query)
		}
		if f.Status != "" {
			q.Set("status", string(f.Status))
		}
		p.NextURL = s.prefix + "/admin/subscribers?" + q.Encode()
	}
	for _, sub := range subs {
		p.Results = append(p.Results, subscriberRow{
			ID: sub.ID, URL: s.prefix + "/admin/subscribers/" + strconv.FormatInt(sub.ID, 10), Email: sub.Email,
			Name: sub.Name, Status: string(sub.Status), Newsletters: strings.Join(sub.Newsletters, ", "), CreatedAt: sub.CreatedAt,
		})
	}
	return s.renderAdmin(c, http.StatusOK, adminPageSubs, p)
}

// adminSubscriberPage is one subscriber: the profile, a form to change it, and
// what Herald holds about them.
type adminSubscriberPage struct {
	adminBase
	Sub         *subscribers.Subscriber
	Action      string
	Newsletters []newsletterChoice
	Statuses    []string // the statuses the form may set
	Form        subscriberForm
	Saved       bool
	Error       string
	Records     *subscribers.Dossier // nil: not available on this server
}

// subscriberForm is what the change form shows.
type subscriberForm struct {
	Name   string
	Status string
}

// handleAdminSubscriber shows one subscriber.
func (s *Server) handleAdminSubscriber(c echo.Context) error {
	return s.renderSubscriber(c, http.StatusOK, nil, "")
}

func (s *Server) renderSubscriber(c echo.Context, status int, posted *subscribers.AdminUpdate, msg string) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.ENOTFOUND, "There is no subscriber with that id.")
	}
	ctx := c.Request().Context()
	sub, err := adm.Get(ctx, id)
	if err != nil {
		return err
	}
	p := adminSubscriberPage{
		adminBase: s.adminFrame(c, sub.Email, "Subscribers"), Sub: sub,
		Action:   s.prefix + "/admin/subscribers/" + strconv.FormatInt(id, 10),
		Statuses: []string{string(subscribers.StatusActive), string(subscribers.StatusUnsubscribed)},
		Form:     subscriberForm{Name: sub.Name, Status: string(sub.Status)},
		Saved:    c.QueryParam("saved") == "1", Error: msg,
	}
	chosen := sub.Newsletters
	if posted != nil { // a refused change is shown as it was entered
		if posted.Name != nil {
			p.Form.Name = *posted.Name
		}
		if posted.Status != nil {
			p.Form.Status = string(*posted.Status)
		}
		if posted.Newsletters != nil {
			chosen = *posted.Newsletters
		}
	}
	for i, n := range s.digestNewsletters() {
		p.Newsletters = append(p.Newsletters, newsletterChoice{Index: i, ID: n.ID, Name: n.Name, Checked: slices.Contains(chosen, n.ID)})
	}
	if rec, ok := s.subs.(subscriberRecords); ok {
		d, err := rec.ExportSubscriber(ctx, id)
		if err != nil && !herald.IsCode(err, herald.EUNAVAILABLE) {
			return err
		}
		p.Records = d
	}
	return s.renderAdmin(c, status, adminPageSub, p)
}

// digestNewsletters is every newsletter a subscriber may take.
func (s *Server) digestNewsletters() []Newsletter {
	if s.digests == nil {
		return s.cfg.Newsletters
	}
	var out []Newsletter
	for _, n := range s.digests.Newsletters() {
		out = append(out, Newsletter{ID: n.ID, Name: n.Name, Description: n.Description})
	}
	return out
}

// handleAdminUpdateSubscriber saves a change to a subscriber's name,
// status or newsletters; a refused change is shown again with the reason.
func (s *Server) handleAdminUpdateSubscriber(c echo.Context) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.ENOTFOUND, "There is no subscriber with that id.")
	}
	form, err := c.FormParams()
	if err != nil {
		return readError(c, herald.Errorf(herald.EBADREQUEST, "The form could not be read."))
	}
	u := subscribers.AdminUpdate{}
	if _, ok := form["name"]; ok {
		name := form.Get("name")
		u.Name = &name
	}
	if v := form.Get("status"); v != "" {
		st := subscribers.Status(v)
		u.Status = &st
	}
	if form.Get("newsletters_offered") != "" {
		lists := form["newsletters"]
		if lists == nil {
			lists = []string{}
		}
		u.Newsletters = &lists
	}
	sub, err := adm.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	// Only what changed is sent, so that an unchanged status that the
	// operator may not set (pending, bounced) does not refuse the rest.
	if u.Status != nil && *u.Status == sub.Status {
		u.Status = nil
	}
	if u.Name != nil && *u.Name == sub.Name {
		u.Name = nil
	}
	if u.Newsletters != nil && slices.Equal(sortedCopy(*u.Newsletters), sub.Newsletters) {
		u.Newsletters = nil
	}
	if u.Status == nil && u.Name == nil && u.Newsletters == nil {
		return c.Redirect(http.StatusSeeOther, s.prefix+"/admin/subscribers/"+strconv.FormatInt(id, 10)+"?saved=1")
	}
	if _, err := adm.Update(c.Request().Context(), id, u); err != nil {
		code := herald.ErrorCode(err)
		if code == herald.EINVALID || code == herald.ECONFLICT {
			return s.renderSubscriber(c, statusOf(code), &u, herald.ErrorMessage(err))
		}
		return err
	}
	return c.Redirect(http.StatusSeeOther, s.prefix+"/admin/subscribers/"+strconv.FormatInt(id, 10)+"?saved=1")
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// adminArticlesPage lists stored articles.
type adminArticlesPage struct {
	adminBase
	Articles []articleRow
	NextURL  string
}

// articleRow is one article in the list.
type articleRow struct {
	ID          int64
	Title       string
	URL         string
	Author      string
	Source      string
	Tags        string
	PublishedAt time.Time
}

// handleAdminArticles lists articles by id, a page at a time.
func (s *Server) handleAdminArticles(c echo.Context) error {
	adm, err := s.articleAdmin()
	if err != nil {
		return err
	}
	after, err := pageCursor(c)
	if err != nil {
		return err
	}
	list, err := adm.List(c.Request().Context(), articles.Filter{AfterID: after, Limit: adminPageSize + 1})
	if err != nil {
		return err
	}
	p := adminArticlesPage{adminBase: s.adminFrame(c, "Articles", "Articles")}
	if len(list) > adminPageSize {
		list = list[:adminPageSize]
		p.NextURL = s.prefix + "/admin/articles?cursor=" + url.QueryEscape(encodeCursor(list[adminPageSize-1].ID))
	}
	for _, a := range list {
		p.Articles = append(p.Articles, articleRow{ID: a.ID, Title: a.Title, URL: a.URL, Author: a.Author, Source: a.Source,
			Tags: strings.Join(a.Tags, ", "), PublishedAt: a.PublishedAt})
	}
	return s.renderAdmin(c, http.StatusOK, adminPageArticles, p)
}

// adminFeedsPage shows every polled feed's health.
type adminFeedsPage struct {
	adminBase
	Feeds     []articles.FeedState
	Failing   int
	Available bool
}

// handleAdminFeeds lists the feeds with their last success, last error and
// consecutive failures.
func (s *Server) handleAdminFeeds(c echo.Context) error {
	p := adminFeedsPage{adminBase: s.adminFrame(c, "Feeds", "Feeds")}
	if fl, ok := s.artAdmin.(feedLister); ok {
		fs, err := fl.Feeds(c.Request().Context())
		if err != nil {
			return err
		}
		p.Feeds, p.Available = fs, true
		for _, f := range fs {
			if f.Failing() {
				p.Failing++
			}
		}
	}
	return s.renderAdmin(c, http.StatusOK, adminPageFeeds, p)
}
