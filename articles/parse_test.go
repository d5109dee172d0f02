package articles

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"herald"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseFixture(t *testing.T, name string) []Article {
	t.Helper()
	as, err := ParseFile(name, readFixture(t, name))
	if err != nil {
		t.Fatalf("ParseFile(%s): %v", name, err)
	}
	return as
}

func contains(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, s)
		}
	}
}

func lacks(t *testing.T, what, s string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(s, b) {
			t.Errorf("%s contains %q:\n%s", what, b, s)
		}
	}
}

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParseRSS(t *testing.T) {
	n := NewNormalizer()
	items, err := n.ParseFeed(bytes.NewReader(readFixture(t, "rss.xml")), "https://ledger.example/feed/", "https://ledger.example/feed/")
	if err != nil {
		t.Fatal(err)
	}
	if len(items.Articles) != 2 || len(items.Skipped) != 1 {
		t.Fatalf("got %d articles, skipped %q; want 2 and 1", len(items.Articles), items.Skipped)
	}
	if !strings.Contains(items.Skipped[0], "no http(s) link") {
		t.Errorf("skip reason %q", items.Skipped[0])
	}
	a := items.Articles[0]
	if a.URL != "https://ledger.example/2026/03/peacekeeping-mandate/" {
		t.Errorf("URL = %q (relative link resolved against the feed, utm_ dropped)", a.URL)
	}
	if a.GUID != "ledger-1001" || a.Source != "https://ledger.example/feed/" {
		t.Errorf("GUID, Source = %q, %q", a.GUID, a.Source)
	}
	if a.Author != "Amara Okafor" {
		t.Errorf("Author (dc:creator) = %q", a.Author)
	}
	if !a.PublishedAt.Equal(date("2026-03-01T09:30:00Z")) {
		t.Errorf("PublishedAt = %v", a.PublishedAt)
	}
	if want := []string{"peacekeeping", "security council"}; !slices.Equal(a.Tags, want) {
		t.Errorf("Tags = %q, want %q", a.Tags, want)
	}
	if a.ImageURL != "https://ledger.example/images/mandate.jpg" || a.ImageAlt != "Peacekeepers on patrol near Juba" {
		t.Errorf("image (media:content) = %q %q", a.ImageURL, a.ImageAlt)
	}
	// content:encoded wins over description, which becomes the summary.
	contains(t, "content", a.ContentHTML, "<strong>13-0</strong>",
		`<a href="https://ledger.example/2025/03/last-year/" target="_blank" rel="noopener">`,
		`<img src="https://ledger.example/images/council.jpg" alt="Council chamber"/>`)
	lacks(t, "content", a.ContentHTML, "script", "alert", "onclick", "steal")
	if a.Summary != "The Council voted 13-0 to extend the mission for a year." {
		t.Errorf("Summary = %q", a.Summary)
	}
	contains(t, "text", a.ContentText, "resolution text (https://un.example/res/2789)")

	b := items.Articles[1]
	if b.Author != "Luis Ferreira" || b.ImageURL != "https://ledger.example/images/envoy.png" {
		t.Errorf("second item: author %q, image (enclosure) %q", b.Author, b.ImageURL)
	}
	if b.ContentText != "A short note & nothing more." {
		t.Errorf("second item text %q", b.ContentText)
	}
}

func TestParseAtom(t *testing.T) {
	as := parseFixture(t, "atom.xml")
	if len(as) != 1 {
		t.Fatalf("%d articles", len(as))
	}
	a := as[0]
	if a.Title != "Women, Peace & Security: A Report Card" {
		t.Errorf("Title = %q", a.Title)
	}
	if a.Author != "Dana Reyes" || a.Source != "file:atom.xml" || a.GUID != "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a" {
		t.Errorf("Author, Source, GUID = %q, %q, %q", a.Author, a.Source, a.GUID)
	}
	if !a.PublishedAt.Equal(date("2026-03-01T08:00:00Z")) || !a.UpdatedAt.Equal(date("2026-03-01T09:15:00Z")) {
		t.Errorf("dates %v %v", a.PublishedAt, a.UpdatedAt)
	}
	contains(t, "content", a.ContentHTML, `href="https://ledger.example/2026/03/wps-report-card/report.pdf"`)
	lacks(t, "content", a.ContentHTML, "iframe", "video.example")
	if a.Summary != "Twenty-five years after resolution 1325, a scorecard." || !slices.Equal(a.Tags, []string{"gender"}) {
		t.Errorf("Summary, Tags = %q, %q", a.Summary, a.Tags)
	}
}

func TestParseJSONFeed(t *testing.T) {
	as := parseFixture(t, "feed.json")
	if len(as) != 1 {
		t.Fatalf("%d articles", len(as))
	}
	a := as[0]
	if a.URL != "https://ledger.example/2026/03/budget-talks/" || a.GUID != "2001" || a.Author != "Kenji Watanabe" {
		t.Errorf("URL, GUID, Author = %q, %q, %q", a.URL, a.GUID, a.Author)
	}
	if a.ImageURL != "https://ledger.example/images/budget.jpg" || !slices.Equal(a.Tags, []string{"budget", "fifth committee"}) {
		t.Errorf("Image, Tags = %q, %q", a.ImageURL, a.Tags)
	}
	if a.ContentHTML != "<p>Delegates worked past midnight.</p>" {
		t.Errorf("content %q (the form must go)", a.ContentHTML)
	}
}

// TestEntityExpansion checks that a "billion laughs" document neither
// expands nor fails: Go's encoding/xml does not expand entities declared in
// a DTD (nor fetch external ones), and gofeed parses it non-strictly, so the
// references stay as the literal text they are.
func TestEntityExpansion(t *testing.T) {
	data := readFixture(t, "billion-laughs.xml")
	n := NewNormalizer()
	items, err := n.ParseFeed(bytes.NewReader(data), "https://laughs.example/feed", "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(items.Articles) != 1 {
		t.Fatalf("%d articles", len(items.Articles))
	}
	a := items.Articles[0]
	total := len(a.Title) + len(a.ContentHTML) + len(a.ContentText) + len(a.Summary)
	if total > 200 {
		t.Fatalf("entities expanded: %d bytes of text", total)
	}
	lacks(t, "text", a.ContentText, "root:", "lollol")
	if a.Title != "Laughs &lol9;" {
		t.Errorf("Title = %q", a.Title)
	}
}

func TestParseMarkdown(t *testing.T) {
	as := parseFixture(t, "article.md")
	a := as[0]
	if a.Title != "Inside the Race for the Next Secretary-General" || a.URL != "https://ledger.example/2026/03/sg-race/" {
		t.Errorf("Title, URL = %q, %q", a.Title, a.URL)
	}
	if a.Author != "Amara Okafor" || a.Source != "file:article.md" {
		t.Errorf("Author, Source = %q, %q", a.Author, a.Source)
	}
	if !a.PublishedAt.Equal(date("2026-03-01T06:00:00Z")) || !a.UpdatedAt.Equal(date("2026-03-01T00:00:00Z")) {
		t.Errorf("dates %v %v", a.PublishedAt, a.UpdatedAt)
	}
	if want := []string{"elections", "secretary-general", "un"}; !slices.Equal(a.Tags, want) {
		t.Errorf("Tags = %q, want %q", a.Tags, want)
	}
	if a.ImageURL != "https://ledger.example/images/sg-race.jpg" || a.ImageAlt != "The General Assembly hall" {
		t.Errorf("image %q %q", a.ImageURL, a.ImageAlt)
	}
	if a.Summary != "Five candidates, one job, and a Security Council that has never chosen a woman." {
		t.Errorf("Summary %q", a.Summary)
	}
	contains(t, "content", a.ContentHTML, "<strong>wide open</strong>", "<li>Candidate one</li>",
		`<a href="https://ledger.example/rules" target="_blank" rel="noopener">the rules</a> or this.`)
	lacks(t, "content", a.ContentHTML, "javascript", "script", "alert")
	contains(t, "text", a.ContentText, "- Candidate one\n- Candidate two")
}

func TestParseMarkdownErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no front matter", "# Title\n\nBody\n", "front matter: missing"},
		{"unclosed", "---\ntitle: x\n", "front matter: missing"},
		{"no url", "---\ntitle: T\n---\nBody\n", "url: is required"},
		{"no title", "---\nurl: https://x.example/a\n---\nBody\n", "title: is required"},
		{"bad yaml", "---\ntitle: [unclosed\nurl: x\n---\n", "front matter:"},
		{"bad date", "---\ntitle: T\nurl: https://x.example/a\ndate: yesterday\n---\n", `date: cannot read "yesterday"`},
		{"bad url", "---\ntitle: T\nurl: /relative\n---\n", "url: must be an absolute http or https URL"},
		{"map title", "---\ntitle: {a: b}\nurl: https://x.example/a\n---\n", "front matter:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile("post.md", []byte(tt.in))
			if !herald.IsCode(err, herald.EINVALID) || !strings.Contains(herald.ErrorMessage(err), tt.want) ||
				!strings.HasPrefix(herald.ErrorMessage(err), "post.md: ") {
				t.Fatalf("ParseFile = %v, want EINVALID \"post.md: ...%s...\"", err, tt.want)
			}
		})
	}
}

func TestParseHTMLPage(t *testing.T) {
	as := parseFixture(t, "article.html")
	a := as[0]
	// JSON-LD wins over og and meta tags.
	if a.Title != "Cluster Munitions Debate Returns to the Council" {
		t.Errorf("Title = %q", a.Title)
	}
	if a.URL != "https://ledger.example/2026/03/cluster-munitions/" {
		t.Errorf("URL (canonical) = %q", a.URL)
	}
	if a.Author != "Izumi Tanaka, Ravi Shah" {
		t.Errorf("Author = %q", a.Author)
	}
	if !a.PublishedAt.Equal(date("2026-03-01T04:00:00Z")) || !a.UpdatedAt.Equal(date("2026-03-01T06:30:00Z")) {
		t.Errorf("dates %v %v", a.PublishedAt, a.UpdatedAt)
	}
	if a.ImageURL != "https://ledger.example/images/munitions-ld.jpg" || a.ImageAlt != "Remnants of a cluster munition" {
		t.Errorf("image %q %q", a.ImageURL, a.ImageAlt)
	}
	if a.Summary != "The UN's disarmament chief calls the weapons' use very concerning." {
		t.Errorf("Summary = %q", a.Summary)
	}
	if want := []string{"cluster munitions", "disarmament", "security council"}; !slices.Equal(a.Tags, want) {
		t.Errorf("Tags = %q, want %q", a.Tags, want)
	}
	contains(t, "content", a.ContentHTML,
		"<p>Hundreds of cluster munitions",
		`<a href="https://ledger.example/people/disarmament-chief" target="_blank" rel="noopener">disarmament chief</a>`,
		"<em>signed by 108 nations</em>",
		`<a href="mailto:tips@ledger.example">`,
		`<figure><img src="https://ledger.example/images/chamber.jpg" alt="The Council chamber"/><figcaption>`,
		"Russia did not mention")
	lacks(t, "content", a.ContentHTML,
		"script", "trackReader", "iframe", "video.example", "onclick", "onerror", "javascript",
		"Miss a Story", "miss a story", "Sign up", "privacy", "<form", "<input", "Subscribe",
		"Related posts", "Another story", "Leave a comment", "Great article", "Filed under",
		"byline", "<h1", "Home", "©")
	contains(t, "text", a.ContentText, "disarmament chief (https://ledger.example/people/disarmament-chief)",
		"A bad link and tips@ledger.example.")
}

func TestParseHTMLPageMetaOnly(t *testing.T) {
	page := `<html><head><title>Fallback</title>
<meta property="og:title" content="OG Title">
<meta property="og:url" content="https://ledger.example/a/">
<meta property="og:image" content="img.jpg"><meta property="og:image:alt" content="Alt">
<meta property="og:description" content="OG description">
<meta property="article:published_time" content="2026-02-01T10:00:00Z">
<meta property="article:author" content="https://ledger.example/author/x">
<meta name="author" content="Meta Author">
<meta property="article:tag" content="UN"><meta property="article:tag" content="Climate">
</head><body><div itemprop="articleBody"><p>Body</p><aside>No</aside></div><p>Outside</p></body></html>`
	as, err := ParseFile("page.html", []byte(page))
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	if a.Title != "OG Title" || a.URL != "https://ledger.example/a/" || a.Author != "Meta Author" ||
		a.Summary != "OG description" || a.ImageURL != "https://ledger.example/a/img.jpg" || a.ImageAlt != "Alt" ||
		!slices.Equal(a.Tags, []string{"climate", "un"}) || !a.PublishedAt.Equal(date("2026-02-01T10:00:00Z")) {
		t.Errorf("meta: %+v", a)
	}
	if a.ContentHTML != "<p>Body</p>" {
		t.Errorf("content = %q, want the articleBody only", a.ContentHTML)
	}
	if _, err := ParseFile("page.html", []byte("<html><body><p>x</p></body></html>")); !herald.IsCode(err, herald.EINVALID) ||
		!strings.Contains(herald.ErrorMessage(err), "url:") {
		t.Errorf("page without URL: %v", err)
	}
}

func TestParseFileUnknown(t *testing.T) {
	for _, in := range []string{"just some text", "<note><to>x</to></note>", `{"not": "a feed"}`} {
		if _, err := ParseFile("x.txt", []byte(in)); !herald.IsCode(err, herald.EINVALID) {
			t.Errorf("ParseFile(%q) = %v, want EINVALID", in, err)
		}
	}
}

func FuzzParseFeed(f *testing.F) {
	for _, name := range []string{"rss.xml", "atom.xml", "feed.json", "billion-laughs.xml"} {
		f.Add(readFixture(f, name))
	}
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "&a;&a;">]><rss><channel><item><title>&a;</title></item></channel></rss>`))
	f.Add([]byte(`<rss><channel><item><link>` + strings.Repeat("<a>", 1000) + `</link></item>`))
	f.Add([]byte(`<feed xmlns="http://www.w3.org/2005/Atom"><entry><content type="xhtml"><div><p>x</p></div></content></entry>`))
	f.Add([]byte(`{"version":"https://jsonfeed.org/version/1.1","items":[{"id":1,"url":7}]}`))
	f.Add([]byte("\xef\xbb\xbf<rss version=\"2.0\"><channel><item><title>\x00</title></item></channel></rss>"))
	n := NewNormalizer()
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := n.ParseFeed(bytes.NewReader(data), "https://fuzz.example/feed", "fuzz")
		if err != nil {
			if !herald.IsCode(err, herald.EINVALID) {
				t.Fatalf("error is not EINVALID: %v", err)
			}
			return
		}
		for _, a := range items.Articles {
			if a.URL == "" || a.Title == "" || len(a.Hash) != 64 {
				t.Fatalf("unnormalised article: %+v", a)
			}
			if len(a.ContentText) > 4*len(data)+1024 {
				t.Fatalf("text grew from %d to %d bytes", len(data), len(a.ContentText))
			}
		}
	})
}

func FuzzFrontMatter(f *testing.F) {
	f.Add(readFixture(f, "article.md"))
	f.Add([]byte("---\ntitle: T\nurl: https://x.example/\n---\n"))
	f.Add([]byte("---\na: &a [*a, *a]\n---\n"))
	f.Add([]byte("---\nx: &x [1,2]\ny: &y [*x,*x,*x,*x,*x,*x,*x,*x]\nz: [*y,*y,*y,*y,*y,*y,*y,*y]\ntitle: t\n---\n"))
	f.Add([]byte("---\r\ntitle: \"\\u0000\"\r\nurl: https://x.example/\r\ntags: a, b\r\n...\r\nbody"))
	f.Add([]byte("---\ndate: 2026-13-45\n---\n"))
	n := NewNormalizer()
	f.Fuzz(func(t *testing.T, data []byte) {
		if front, _, ok := splitFrontMatter(data); ok {
			_, _ = parseFrontMatter(front)
		}
		as, err := n.ParseFile("fuzz.md", data)
		if err != nil {
			if !herald.IsCode(err, herald.EINVALID) {
				t.Fatalf("error is not EINVALID: %v", err)
			}
			return
		}
		if len(as) != 1 || as[0].URL == "" || as[0].Title == "" {
			t.Fatalf("ParseFile = %+v", as)
		}
	})
}
