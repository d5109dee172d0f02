package web

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/articles"
	"herald/digest"
)

// The archive's pages, in templates/web.
const (
	pageArchive      = "archive.html"
	pageArchiveIssue = "archive_issue.html"
)

// Sizes of the archive's pages and feeds.
const (
	archivePageSize = 30
	feedSize        = 20
)

// archiveCache lets browsers and shared caches keep the archive a few
// minutes: it is the same for everyone and changes once per issue.
const archiveCache = "public, max-age=300"

// archiveIssueCSP is contentSecurityPolicy with the articles' images, which
// live on the news site, allowed.
const archiveIssueCSP = "default-src 'none'; style-src 'self'; img-src 'self' https:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

const atomContentType = "application/atom+xml; charset=utf-8"

// dateText is a date both for people and for <time datetime>.
type dateText struct {
	ISO   string // 2025-03-04
	Human string // March 4, 2025
}

// archivePage lists sent issues, grouped per newsletter, newest first.
type archivePage struct {
	basePage
	Heading     string
	Description string
	Sections    []archiveSection
	FeedURL     string // the Atom feed of what the page lists
	OlderURL    string // the next page; "" on the last
	LatestURL   string // the first page; "" on it
	SignupURL   string
}

// archiveSection is one newsletter's issues on an archive page.
type archiveSection struct {
	Index       int // for element ids: newsletter ids are not guaranteed to be valid ids
	ID          string
	Name        string
	Description string
	URL         string // the newsletter's own archive page
	Issues      []archiveIssueLink
}

// archiveIssueLink is one issue in an archive list.
type archiveIssueLink struct {
	Subject string
	URL     string
	Date    dateText
}

// archiveIssuePage is the public copy of one sent issue: the articles of
// its main edition, nothing about any reader.
type archiveIssuePage struct {
	basePage
	Newsletter    string
	Description   string
	NewsletterURL string // the newsletter's archive page
	Subject       string
	Date          dateText
	Stories       []archiveStory
	SignupURL     string
	FeedURL       string
}

// archiveStory is one article of an archived issue.
type archiveStory struct {
	Index    int
	Title    string
	URL      string
	Author   string
	Date     dateText
	ImageURL string
	ImageAlt string
	Excerpt  string
}

// checkArchivePages makes a missing archive template an error at start
// rather than at the first visit.
func checkArchivePages(p *pages) error {
	for _, name := range []string{pageArchive, pageArchiveIssue} {
		if p.sets[name] == nil {
			return fmt.Errorf("web: template %s is missing", name)
		}
	}
	return nil
}

// handleArchive lists every newsletter's sent issues, newest first, a page
// at a time (?before=ID).
func (s *Server) handleArchive(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("archive")
	}
	return s.archiveList(c, nil)
}

// handleNewsletterArchive lists one newsletter's sent issues; with ".atom"
// after the newsletter's id it is that newsletter's feed.
func (s *Server) handleNewsletterArchive(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("archive")
	}
	id, feed := strings.CutSuffix(c.Param("newsletter"), ".atom")
	nl, ok := s.archiveNewsletter(id)
	if !ok {
		return herald.Errorf(herald.ENOTFOUND, "We could not find that newsletter.")
	}
	if feed {
		return s.archiveFeed(c, &nl)
	}
	return s.archiveList(c, &nl)
}

// handleArchiveFeed is the Atom feed of every newsletter's sent issues.
func (s *Server) handleArchiveFeed(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("archive")
	}
	return s.archiveFeed(c, nil)
}

// handleArchiveIssue shows one sent issue as the public would have read it.
// An issue that is not sent, or not of that newsletter, is not found.
func (s *Server) handleArchiveIssue(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("archive")
	}
	notFound := herald.Errorf(herald.ENOTFOUND, "We could not find that issue in the archive.")
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return notFound
	}
	ctx := c.Request().Context()
	iss, err := s.digests.Issue(ctx, id)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return notFound
	} else if err != nil {
		return fmt.Errorf("archive issue %d: %w", id, err)
	}
	if iss.Status != digest.IssueSent || iss.NewsletterID != c.Param("newsletter") {
		return notFound
	}
	as, err := s.digests.IssueArticles(ctx, iss)
	if err != nil {
		return fmt.Errorf("archive issue %d: articles: %w", id, err)
	}
	nl := s.newsletterOrID(iss.NewsletterID)
	loc := locationOf(nl)
	p := archiveIssuePage{
		Newsletter:    nl.Name,
		Description:   nl.Description,
		NewsletterURL: s.prefix + newsletterArchivePath(nl.ID),
		Subject:       subjectOf(iss, nl),
		Date:          dateOf(issueDate(iss), loc),
		SignupURL:     s.prefix + "/",
		FeedURL:       s.prefix + newsletterArchivePath(nl.ID) + ".atom",
	}
	p.basePage = s.base(p.Subject)
	for i, a := range as {
		st := archiveStory{
			Index:    i,
			Title:    a.Title,
			URL:      a.URL,
			Author:   a.Author,
			ImageURL: a.ImageURL,
			ImageAlt: a.ImageAlt,
			Excerpt:  a.Excerpt,
		}
		if !a.PublishedAt.IsZero() {
			st.Date = dateOf(a.PublishedAt, loc)
		}
		p.Stories = append(p.Stories, st)
	}
	c.Response().Header().Set("Content-Security-Policy", archiveIssueCSP)
	return s.renderPublic(c, pageArchiveIssue, p)
}

// archiveList renders one page of the archive: every newsletter's issues,
// or only nl's.
func (s *Server) archiveList(c echo.Context, nl *digest.Newsletter) error {
	var before int64
	if v := c.QueryParam("before"); v != "" {
		id, ok := positiveID(v)
		if !ok {
			return herald.Errorf(herald.EBADREQUEST, "That archive page does not exist: before must be an issue number.")
		}
		before = id
	}
	f := digest.IssueFilter{Statuses: []digest.IssueStatus{digest.IssueSent}, BeforeID: before, Limit: archivePageSize + 1}
	path := "/archive"
	p := archivePage{
		Heading:     "Newsletter archive",
		Description: "Every issue we have sent, newest first.",
		SignupURL:   s.prefix + "/",
	}
	if nl != nil {
		f.NewsletterID = nl.ID
		path = newsletterArchivePath(nl.ID)
		p.Heading = nl.Name
		p.Description = nl.Description
	}
	issues, err := s.digests.Issues(c.Request().Context(), f)
	if err != nil {
		return fmt.Errorf("archive: list issues: %w", err)
	}
	if len(issues) > archivePageSize {
		issues = issues[:archivePageSize]
		p.OlderURL = s.prefix + path + "?before=" + strconv.FormatInt(issues[len(issues)-1].ID, 10)
	}
	if before != 0 {
		p.LatestURL = s.prefix + path
	}
	p.FeedURL = s.prefix + path + ".atom"
	p.Sections = s.archiveSections(issues)
	title := p.Heading
	if nl != nil {
		title = nl.Name + " archive"
	}
	p.basePage = s.base(title)
	return s.renderPublic(c, pageArchive, p)
}

// archiveSections groups issues (newest first) per newsletter, in the
// configured order; issues of a newsletter no longer configured come last,
// under its id.
func (s *Server) archiveSections(issues []*digest.Issue) []archiveSection {
	nls := s.digests.Newsletters()
	pos := make(map[string]int)
	var out []archiveSection
	add := func(nl digest.Newsletter) {
		pos[nl.ID] = len(out)
		out = append(out, archiveSection{
			ID: nl.ID, Name: nl.Name, Description: nl.Description,
			URL: s.prefix + newsletterArchivePath(nl.ID),
		})
	}
	has := make(map[string]bool)
	for _, iss := range issues {
		has[iss.NewsletterID] = true
	}
	for _, nl := range nls {
		if has[nl.ID] {
			add(nl)
		}
	}
	byID := make(map[string]digest.Newsletter, len(nls))
	for _, nl := range nls {
		byID[nl.ID] = nl
	}
	for _, iss := range issues {
		if _, ok := pos[iss.NewsletterID]; !ok {
			add(digest.Newsletter{ID: iss.NewsletterID, Name: iss.NewsletterID})
		}
		nl, ok := byID[iss.NewsletterID]
		if !ok {
			nl = digest.Newsletter{ID: iss.NewsletterID, Name: iss.NewsletterID}
		}
		sec := &out[pos[iss.NewsletterID]]
		sec.Issues = append(sec.Issues, archiveIssueLink{
			Subject: subjectOf(iss, nl),
			URL:     s.prefix + issueArchivePath(iss),
			Date:    dateOf(issueDate(iss), locationOf(nl)),
		})
	}
	for i := range out {
		out[i].Index = i
	}
	return out
}

// renderPublic renders a page that anyone may cache for a few minutes. The
// cache header is set only once the page has rendered, so that an error
// answer is never cached.
func (s *Server) renderPublic(c echo.Context, page string, data any) error {
	t := s.pages.sets[page]
	if t == nil {
		return fmt.Errorf("render: no page %s", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("render %s: %w", page, err)
	}
	c.Response().Header().Set("Cache-Control", archiveCache)
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// archiveNewsletter returns the configured newsletter with that id.
func (s *Server) archiveNewsletter(id string) (digest.Newsletter, bool) {
	for _, nl := range s.digests.Newsletters() {
		if nl.ID == id {
			return nl, true
		}
	}
	return digest.Newsletter{}, false
}

// newsletterOrID returns the configured newsletter with that id, or one
// named by its id when it is no longer configured.
func (s *Server) newsletterOrID(id string) digest.Newsletter {
	if nl, ok := s.archiveNewsletter(id); ok {
		return nl
	}
	return digest.Newsletter{ID: id, Name: id}
}

func newsletterArchivePath(id string) string {
	return "/archive/" + url.PathEscape(id)
}

func issueArchivePath(iss *digest.Issue) string {
	return newsletterArchivePath(iss.NewsletterID) + "/" + strconv.FormatInt(iss.ID, 10)
}

// locationOf is the newsletter's time zone: its dates are the dates its
// readers saw.
func locationOf(nl digest.Newsletter) *time.Location {
	if nl.Schedule != nil && nl.Schedule.Location() != nil {
		return nl.Schedule.Location()
	}
	return time.UTC
}

// issueDate is the issue's dateline: its schedule slot, which for a manual
// send is when it was asked for.
func issueDate(iss *digest.Issue) time.Time {
	switch {
	case !iss.Slot.IsZero():
		return iss.Slot
	case !iss.CompletedAt.IsZero():
		return iss.CompletedAt
	}
	return iss.CreatedAt
}

func dateOf(t time.Time, loc *time.Location) dateText {
	t = t.In(loc)
	return dateText{ISO: t.Format(time.DateOnly), Human: t.Format("January 2, 2006")}
}

// subjectOf is the issue's subject line, or the newsletter and the date for
// an issue without one.
func subjectOf(iss *digest.Issue, nl digest.Newsletter) string {
	if sub := strings.TrimSpace(iss.Subject); sub != "" {
		return sub
	}
	return nl.Name + ", " + dateOf(issueDate(iss), locationOf(nl)).Human
}

// The Atom 1.0 feed (RFC 4287), written with encoding/xml so that every
// title and summary is escaped.
type atomFeed struct {
	XMLName  xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	ID       string      `xml:"id"`
	Title    string      `xml:"title"`
	Subtitle string      `xml:"subtitle,omitempty"`
	Updated  string      `xml:"updated"`
	Links    []atomLink  `xml:"link"`
	Author   atomPerson  `xml:"author"`
	Entries  []atomEntry `xml:"entry"`
}

type atomLink struct {
	Rel  string `xml:"rel,attr"`
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type atomPerson struct {
	Name string `xml:"name"`
}

type atomEntry struct {
	ID        string       `xml:"id"`
	Title     string       `xml:"title"`
	Published string       `xml:"published"`
	Updated   string       `xml:"updated"`
	Links     []atomLink   `xml:"link"`
	Category  atomCategory `xml:"category"`
	Summary   atomText     `xml:"summary"`
}

type atomCategory struct {
	Term  string `xml:"term,attr"`
	Label string `xml:"label,attr,omitempty"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

// archiveFeed writes the Atom feed of the latest sent issues, of every
// newsletter or only nl's.
func (s *Server) archiveFeed(c echo.Context, nl *digest.Newsletter) error {
	ctx := c.Request().Context()
	f := digest.IssueFilter{Statuses: []digest.IssueStatus{digest.IssueSent}, Limit: feedSize}
	path := "/archive"
	feed := atomFeed{
		Title:  s.cfg.SiteName + " newsletters",
		Author: atomPerson{Name: s.cfg.SiteName},
	}
	if nl != nil {
		f.NewsletterID = nl.ID
		path = newsletterArchivePath(nl.ID)
		feed.Title = nl.Name
		feed.Subtitle = nl.Description
	}
	issues, err := s.digests.Issues(ctx, f)
	if err != nil {
		return fmt.Errorf("archive feed: list issues: %w", err)
	}
	feed.ID = s.absURL(c, path)
	feed.Links = []atomLink{
		{Rel: "self", Type: "application/atom+xml", Href: s.absURL(c, path+".atom")},
		{Rel: "alternate", Type: "text/html", Href: s.absURL(c, path)},
	}
	var newest time.Time
	authority := s.tagAuthority(c)
	for _, iss := range issues {
		as, err := s.digests.IssueArticles(ctx, iss)
		if err != nil {
			return fmt.Errorf("archive feed: articles of issue %d: %w", iss.ID, err)
		}
		inl := s.newsletterOrID(iss.NewsletterID)
		updated := iss.CompletedAt
		if updated.IsZero() {
			updated = iss.CreatedAt
		}
		if updated.After(newest) {
			newest = updated
		}
		feed.Entries = append(feed.Entries, atomEntry{
			ID:        "tag:" + authority + "," + iss.CreatedAt.UTC().Format(time.DateOnly) + ":issue/" + strconv.FormatInt(iss.ID, 10),
			Title:     subjectOf(iss, inl),
			Published: issueDate(iss).UTC().Format(time.RFC3339),
			Updated:   updated.UTC().Format(time.RFC3339),
			Links:     []atomLink{{Rel: "alternate", Type: "text/html", Href: s.absURL(c, issueArchivePath(iss))}},
			Category:  atomCategory{Term: inl.ID, Label: inl.Name},
			Summary:   atomText{Type: "html", Body: feedSummary(as)},
		})
	}
	if newest.IsZero() {
		newest = s.now()
	}
	feed.Updated = newest.UTC().Format(time.RFC3339)

	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(feed); err != nil {
		return fmt.Errorf("archive feed: encode: %w", err)
	}
	buf.WriteByte('\n')
	c.Response().Header().Set("Cache-Control", archiveCache)
	return c.Blob(http.StatusOK, atomContentType, buf.Bytes())
}

// feedSummary lists an issue's articles as an HTML fragment; the titles
// are HTML-escaped here and the whole is XML-escaped by the encoder.
func feedSummary(as []*articles.Article) string {
	if len(as) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("<p>In this issue:</p>\n<ul>\n")
	for _, a := range as {
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", html.EscapeString(a.URL), html.EscapeString(a.Title))
	}
	b.WriteString("</ul>")
	return b.String()
}

// absURL is the absolute address of path (a path below Herald's root):
// BaseURL's, or the request's when no BaseURL is configured.
func (s *Server) absURL(c echo.Context, path string) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimRight(s.cfg.BaseURL, "/") + path
	}
	return c.Scheme() + "://" + c.Request().Host + path
}

// tagAuthority is the host name that mints the feed's tag: URIs (RFC
// 4151).
func (s *Server) tagAuthority(c echo.Context) string {
	if u, err := url.Parse(s.cfg.BaseURL); err == nil && u.Hostname() != "" {
		return strings.ToLower(u.Hostname())
	}
	host := c.Request().Host
	if u, err := url.Parse("//" + host); err == nil && u.Hostname() != "" {
		return strings.ToLower(u.Hostname())
	}
	return "localhost"
}
