package web

import (
	"encoding/xml"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/articles"
	"herald/digest"
)

// sampleArchivePage is archive.html's data for the parse-all test.
func sampleArchivePage(s *Server) archivePage {
	return archivePage{
		basePage: s.base("t"), Heading: "h", Description: "d", FeedURL: "/archive.atom",
		OlderURL: "/archive?before=3", LatestURL: "/archive", SignupURL: "/",
		Sections: []archiveSection{{Name: "n", Description: "d", URL: "/archive/n", Issues: []archiveIssueLink{
			{Subject: "s", URL: "/archive/n/1", Date: dateText{ISO: "2025-03-04", Human: "March 4, 2025"}},
		}}},
	}
}

// sampleArchiveIssuePage is archive_issue.html's data for the parse-all
// test.
func sampleArchiveIssuePage(s *Server) archiveIssuePage {
	return archiveIssuePage{
		basePage: s.base("t"), Newsletter: "n", Description: "d", NewsletterURL: "/archive/n", Subject: "s",
		Date: dateText{ISO: "2025-03-04", Human: "March 4, 2025"}, SignupURL: "/", FeedURL: "/archive/n.atom",
		Stories: []archiveStory{
			{Title: "t", URL: "https://a.example/", Author: "a", Date: dateText{ISO: "2025-03-04", Human: "March 4, 2025"}, ImageURL: "https://a.example/i.jpg", ImageAlt: "alt", Excerpt: "e"},
			{Index: 1, Title: "bare", URL: "https://a.example/b"},
		},
	}
}

const evilTitle = `<script>alert("x")</script> & "friends"`

// archiveFixture stores issues of both newsletters: daily 1 and 2 sent,
// weekly 3 sent, daily 4 still sending, daily 5 empty.
func archiveFixture(h *harness) {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	vote := &articles.Article{ID: 11, URL: "https://passblue.example/vote", Title: "The Council votes", Author: "Jane Doe",
		PublishedAt: at("2025-03-04T02:00:00Z"), ImageURL: "https://passblue.example/vote.jpg", ImageAlt: "Raised hands",
		Excerpt: "A vote, at last."}
	evil := &articles.Article{ID: 12, URL: "https://passblue.example/evil?a=1&b=2", Title: evilTitle, Excerpt: "x < y"}
	h.digs.addIssue(&digest.Issue{ID: 1, NewsletterID: "daily", Status: digest.IssueSent, Subject: "Monday's brief",
		Slot: at("2025-03-03T12:00:00Z"), CreatedAt: at("2025-03-03T12:00:00Z"), CompletedAt: at("2025-03-03T12:10:00Z")}, vote)
	// 03:00 UTC on the 4th is still the 3rd in New York.
	h.digs.addIssue(&digest.Issue{ID: 2, NewsletterID: "daily", Status: digest.IssueSent, Subject: evilTitle,
		Slot: at("2025-03-04T03:00:00Z"), CreatedAt: at("2025-03-04T03:00:00Z"), CompletedAt: at("2025-03-04T03:20:00Z")}, vote, evil)
	h.digs.addIssue(&digest.Issue{ID: 3, NewsletterID: "weekly", Status: digest.IssueSent, Subject: "",
		Slot: at("2025-03-08T09:00:00Z"), CreatedAt: at("2025-03-08T09:00:00Z"), CompletedAt: at("2025-03-08T09:30:00Z")}, vote)
	h.digs.addIssue(&digest.Issue{ID: 4, NewsletterID: "daily", Status: digest.IssueSending, Subject: "Still sending",
		Slot: at("2025-03-05T12:00:00Z"), CreatedAt: at("2025-03-05T12:00:00Z")}, vote)
	h.digs.addIssue(&digest.Issue{ID: 5, NewsletterID: "daily", Status: digest.IssueEmpty, Subject: "Empty one",
		Slot: at("2025-03-06T12:00:00Z"), CreatedAt: at("2025-03-06T12:00:00Z")})
}

func TestArchiveList(t *testing.T) {
	h := newHarness(t)
	archiveFixture(h)

	rec := h.get(t, "/archive")
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Cache-Control", "public, max-age=300")
	wantHeader(t, rec, "Content-Type", "text/html; charset=UTF-8")
	wantBody(t, rec,
		`<link rel="alternate" type="application/atom+xml" title="Newsletter archive" href="/archive.atom">`,
		"The Daily Brief", "The UN in five minutes.", "The Week at the UN", "Our best reporting.",
		`<a href="/archive/daily/1">Monday&#39;s brief</a> <time datetime="2025-03-03">March 3, 2025</time>`,
		`<a href="/archive/daily/2">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;friends&#34;</a> <time datetime="2025-03-03">March 3, 2025</time>`,
		`<a href="/archive/weekly/3">The Week at the UN, March 8, 2025</a>`,
		`href="/"`,
	)
	wantNoBody(t, rec, "Still sending", "Empty one", "<script>", "Older issues", "Latest issues", "noindex")
	body := rec.Body.String()
	if i, j, k := strings.Index(body, "/archive/daily/2"), strings.Index(body, "/archive/daily/1"), strings.Index(body, "/archive/weekly/3"); i > j || j > k {
		t.Errorf("order: daily/2 at %d, daily/1 at %d, weekly/3 at %d; want configured newsletters, newest first", i, j, k)
	}
	if f := h.digs.filters[0]; len(f.Statuses) != 1 || f.Statuses[0] != digest.IssueSent || f.NewsletterID != "" {
		t.Errorf("filter = %+v, want sent issues of every newsletter", f)
	}

	// One newsletter's page.
	rec = h.get(t, "/archive/weekly")
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Cache-Control", "public, max-age=300")
	wantBody(t, rec, "<h1>The Week at the UN</h1>", "/archive/weekly/3", `href="/archive/weekly.atom"`)
	wantNoBody(t, rec, "/archive/daily/")

	rec = h.get(t, "/archive/monthly")
	wantStatus(t, rec, http.StatusNotFound)
	wantHeader(t, rec, "Cache-Control", "no-store")
}

func TestArchivePaging(t *testing.T) {
	h := newHarness(t)
	slot := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := int64(1); i <= archivePageSize+5; i++ {
		h.digs.addIssue(&digest.Issue{ID: i, NewsletterID: "weekly", Status: digest.IssueSent,
			Subject: "Issue number " + strconv.FormatInt(i, 10) + ".", Slot: slot.AddDate(0, 0, int(i))})
	}
	rec := h.get(t, "/archive")
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Issue number 35.", "Issue number 6.", `<a href="/archive?before=6" rel="next">Older issues</a>`)
	wantNoBody(t, rec, "Issue number 5.", "Latest issues")

	rec = h.get(t, "/archive?before=6")
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Issue number 5.", "Issue number 1.", `<a href="/archive">Latest issues</a>`)
	wantNoBody(t, rec, "Issue number 6.", "Older issues")

	rec = h.get(t, "/archive/weekly?before=6")
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `<a href="/archive/weekly">Latest issues</a>`)

	rec = h.get(t, "/archive?before=1")
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "No issues on this page.")

	for _, bad := range []string{"abc", "0", "-3", "1e3"} {
		rec = h.get(t, "/archive?before="+bad)
		wantStatus(t, rec, http.StatusBadRequest)
		wantHeader(t, rec, "Cache-Control", "no-store")
	}
}

func TestArchiveIssue(t *testing.T) {
	h := newHarness(t)
	archiveFixture(h)

	rec := h.get(t, "/archive/daily/1")
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Cache-Control", "public, max-age=300")
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' https:") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	wantBody(t, rec,
		"<title>Monday&#39;s brief · PassBlue</title>",
		`<a href="/archive/daily">The Daily Brief</a>`,
		"<h1>Monday&#39;s brief</h1>",
		`<time datetime="2025-03-03">March 3, 2025</time>`,
		`<a href="https://passblue.example/vote">The Council votes</a>`,
		`By Jane Doe · <time datetime="2025-03-03">March 3, 2025</time>`,
		`<img class="story-image" src="https://passblue.example/vote.jpg" alt="Raised hands">`,
		"A vote, at last.",
		`Read more<span class="visually-hidden">: The Council votes</span>`,
		`<a class="button" href="/">Subscribe</a>`,
		`<link rel="alternate" type="application/atom+xml" title="The Daily Brief" href="/archive/daily.atom">`,
	)
	wantNoBody(t, rec, "unsubscribe", "noindex")

	// Titles and subjects are escaped.
	rec = h.get(t, "/archive/daily/2")
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;friends&#34;", `href="https://passblue.example/evil?a=1&amp;b=2"`, "x &lt; y")
	wantNoBody(t, rec, "<script>")

	tests := []struct{ path, why string }{
		{"/archive/daily/4", "still sending"},
		{"/archive/daily/5", "empty"},
		{"/archive/weekly/1", "another newsletter's"},
		{"/archive/daily/99", "unknown"},
		{"/archive/daily/abc", "not a number"},
		{"/archive/daily/0", "zero"},
	}
	for _, tt := range tests {
		rec := h.get(t, tt.path)
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s (%s): status %d, want 404", tt.path, tt.why, rec.Code)
		}
		wantHeader(t, rec, "Cache-Control", "no-store")
	}
}

// atomDoc is what a feed reader reads of the archive feed.
type atomDoc struct {
	XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string   `xml:"id"`
	Title   string   `xml:"title"`
	Updated string   `xml:"updated"`
	Links   []struct {
		Rel  string `xml:"rel,attr"`
		Href string `xml:"href,attr"`
	} `xml:"link"`
	Entries []struct {
		ID      string `xml:"id"`
		Title   string `xml:"title"`
		Updated string `xml:"updated"`
		Link    struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"link"`
		Summary struct {
			Type string `xml:"type,attr"`
			Body string `xml:",chardata"`
		} `xml:"summary"`
	} `xml:"entry"`
}

func getFeed(t *testing.T, h *harness, path string) atomDoc {
	t.Helper()
	rec := h.get(t, path)
	wantStatus(t, rec, http.StatusOK)
	wantHeader(t, rec, "Content-Type", "application/atom+xml; charset=utf-8")
	wantHeader(t, rec, "Cache-Control", "public, max-age=300")
	if !strings.HasPrefix(rec.Body.String(), `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("no XML declaration: %.60s", rec.Body.String())
	}
	wantNoBody(t, rec, "<script>")
	var doc atomDoc
	if err := xml.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("feed does not parse: %v\n%s", err, rec.Body.String())
	}
	return doc
}

func TestArchiveFeed(t *testing.T) {
	h := newHarness(t)
	archiveFixture(h)

	doc := getFeed(t, h, "/archive.atom")
	if doc.ID != "https://news.example.org/archive" || doc.Title != "PassBlue newsletters" || doc.Updated != "2025-03-08T09:30:00Z" {
		t.Errorf("feed id %q, title %q, updated %q", doc.ID, doc.Title, doc.Updated)
	}
	if len(doc.Links) != 2 || doc.Links[0].Rel != "self" || doc.Links[0].Href != "https://news.example.org/archive.atom" ||
		doc.Links[1].Rel != "alternate" || doc.Links[1].Href != "https://news.example.org/archive" {
		t.Errorf("feed links = %+v", doc.Links)
	}
	if len(doc.Entries) != 3 {
		t.Fatalf("entries = %d, want the 3 sent issues", len(doc.Entries))
	}
	weekly, evil := doc.Entries[0], doc.Entries[1]
	if weekly.ID != "tag:news.example.org,2025-03-08:issue/3" || weekly.Title != "The Week at the UN, March 8, 2025" ||
		weekly.Updated != "2025-03-08T09:30:00Z" {
		t.Errorf("first entry = %+v", weekly)
	}
	if evil.Title != evilTitle {
		t.Errorf("title = %q, want %q back", evil.Title, evilTitle)
	}
	if evil.Link.Rel != "alternate" || evil.Link.Href != "https://news.example.org/archive/daily/2" {
		t.Errorf("link = %+v", evil.Link)
	}
	if evil.Summary.Type != "html" ||
		!strings.Contains(evil.Summary.Body, `<li><a href="https://passblue.example/vote">The Council votes</a></li>`) ||
		!strings.Contains(evil.Summary.Body, `<a href="https://passblue.example/evil?a=1&amp;b=2">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;friends&#34;</a>`) {
		t.Errorf("summary = %s", evil.Summary.Body)
	}

	// One newsletter's feed.
	doc = getFeed(t, h, "/archive/weekly.atom")
	if doc.Title != "The Week at the UN" || doc.ID != "https://news.example.org/archive/weekly" || len(doc.Entries) != 1 {
		t.Errorf("weekly feed: title %q, id %q, %d entries", doc.Title, doc.ID, len(doc.Entries))
	}
	rec := h.get(t, "/archive/monthly.atom")
	wantStatus(t, rec, http.StatusNotFound)

	// A feed with no entries is still valid Atom.
	h2 := newHarness(t)
	doc = getFeed(t, h2, "/archive.atom")
	if len(doc.Entries) != 0 || doc.Updated == "" {
		t.Errorf("empty feed: %+v", doc)
	}
}

func TestArchiveBelowBasePath(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BaseURL = "https://passblue.example/newsletters/" })
	archiveFixture(h)
	rec := h.get(t, "/archive")
	wantBody(t, rec, `href="/newsletters/archive/daily/1"`, `href="/newsletters/archive.atom"`, `href="/newsletters/"`)
	doc := getFeed(t, h, "/archive.atom")
	if len(doc.Entries) == 0 || doc.Entries[0].Link.Href != "https://passblue.example/newsletters/archive/weekly/3" ||
		!strings.HasPrefix(doc.Entries[0].ID, "tag:passblue.example,") {
		t.Errorf("entries = %+v", doc.Entries)
	}
}
