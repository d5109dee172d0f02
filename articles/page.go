package articles

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/PuerkitoBio/goquery"
)

// junk lists what is never part of a story in an article page: code,
// embeds, forms, navigation, asides and footers, comments, related posts,
// share bars and newsletter calls to action.
const junk = `script, style, noscript, template, link, meta, iframe, frame, object, embed, applet,
form, input, button, select, textarea, dialog, svg, canvas, nav, aside, footer, header,
[hidden], [aria-hidden="true"], [role="navigation"], [role="complementary"], [role="banner"],
[role="contentinfo"], [role="dialog"],
#comments, #respond, .comments, .comment-list, .comment-respond, [id^="comment"], [class*="comments"],
[class*="related"], [id*="related"], [class*="share"], [class*="social"],
[class*="subscribe"], [id*="subscribe"], [class*="newsletter"], [id*="newsletter"],
[class*="signup"], [class*="sign-up"], [class*="promo"], [class*="advert"], [class*="sponsor"],
[class~="ad"], [class~="ads"], [class~="cta"], [class*="-cta"], [class*="cta-"]`

// ParseHTMLPage extracts one article from an HTML article page. Metadata
// comes from JSON-LD (a NewsArticle, Article, BlogPosting or the like:
// headline, author.name, datePublished, dateModified, image, description,
// keywords) when the page has it, else from Open Graph and article meta tags
// (og:title, og:description, og:image and og:image:alt,
// article:published_time, article:modified_time, article:author or meta
// author, article:tag), else from <title>. The URL is link rel=canonical,
// og:url, or pageURL. The body is [itemprop=articleBody], <article>, <main>
// or <body>, in that order of preference, with scripts, embeds, forms,
// navigation, asides, footers, comments, related posts, share bars and
// newsletter calls to action taken out. The article is normalised.
func (n *Normalizer) ParseHTMLPage(data []byte, pageURL, source string) (Article, error) {
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(data))
	if err != nil {
		return Article{}, invalid("html: %v", err)
	}
	meta := func(keys ...string) string {
		for _, k := range keys {
			sel := doc.Find(`meta[property="` + k + `"], meta[name="` + k + `"]`).First()
			if v := strings.TrimSpace(sel.AttrOr("content", "")); v != "" {
				return v
			}
		}
		return ""
	}
	var a Article
	a.Source = source

	// URL: canonical link, og:url, the URL the page was fetched from.
	base := pageURL
	for _, u := range []string{
		strings.TrimSpace(doc.Find(`link[rel~="canonical"]`).First().AttrOr("href", "")),
		meta("og:url"),
		pageURL,
	} {
		if u == "" {
			continue
		}
		if r, ok := resolveHTTP(firstNonEmpty(meta("og:url"), pageURL), u); ok {
			a.URL = r
			break
		}
	}
	if a.URL == "" {
		return Article{}, invalid("url: the page names no canonical URL (link rel=canonical or og:url)")
	}
	if base == "" {
		base = a.URL
	}

	// Open Graph and article meta first; JSON-LD overrides what it has.
	a.Title = meta("og:title", "twitter:title")
	a.Summary = meta("og:description", "description", "twitter:description")
	a.Author = meta("article:author", "author")
	if strings.HasPrefix(a.Author, "http://") || strings.HasPrefix(a.Author, "https://") {
		// article:author is often a profile URL, not a name.
		a.Author = meta("author")
	}
	a.ImageURL = meta("og:image", "og:image:url", "og:image:secure_url", "twitter:image")
	a.ImageAlt = meta("og:image:alt", "twitter:image:alt")
	doc.Find(`meta[property="article:tag"]`).Each(func(_ int, s *goquery.Selection) {
		a.Tags = append(a.Tags, s.AttrOr("content", ""))
	})
	published := meta("article:published_time", "datePublished", "date")
	modified := meta("article:modified_time", "og:updated_time", "dateModified")

	doc.Find(`script[type="application/ld+json"]`).EachWithBreak(func(_ int, s *goquery.Selection) bool {
		ld := findLDArticle([]byte(s.Text()))
		if ld == nil {
			return true
		}
		a.Title = firstNonEmpty(ldString(ld["headline"]), ldString(ld["name"]), a.Title)
		a.Author = firstNonEmpty(strings.Join(ldNames(ld["author"]), ", "), a.Author)
		published = firstNonEmpty(ldString(ld["datePublished"]), published)
		modified = firstNonEmpty(ldString(ld["dateModified"]), modified)
		if src, alt := ldImage(ld["image"]); src != "" {
			a.ImageURL, a.ImageAlt = src, firstNonEmpty(alt, a.ImageAlt)
		}
		a.Summary = firstNonEmpty(ldString(ld["description"]), a.Summary)
		if kw := ldKeywords(ld["keywords"]); len(kw) > 0 {
			a.Tags = kw
		}
		return false
	})
	if a.Title == "" {
		a.Title = strings.TrimSpace(doc.Find("title").First().Text())
	}
	if a.Title == "" {
		a.Title = strings.TrimSpace(doc.Find("h1").First().Text())
	}
	a.Title = textOf(a.Title)
	a.Summary = textOf(a.Summary)
	a.Author = textOf(a.Author)
	a.Tags = capTags(a.Tags)
	if a.PublishedAt, err = parseDate("published_time", published); err != nil {
		return Article{}, err
	}
	if a.UpdatedAt, err = parseDate("modified_time", modified); err != nil {
		return Article{}, err
	}
	if a.ImageURL != "" {
		if r, ok := resolveHTTP(base, a.ImageURL); ok {
			a.ImageURL = r
		} else {
			a.ImageURL, a.ImageAlt = "", ""
		}
	}

	body := doc.Find(`[itemprop="articleBody"]`).First()
	for _, sel := range []string{"article", "main", `[role="main"]`, "body"} {
		if body.Length() > 0 {
			break
		}
		body = doc.Find(sel).First()
	}
	body.Find(junk).Remove()
	// A heading that repeats the title adds nothing to an email.
	body.Find("h1").Each(func(_ int, s *goquery.Selection) {
		if collapseSpace(s.Text()) == a.Title {
			s.Remove()
		}
	})
	body.Find("p, div, section, h2, h3, h4, h5, h6, li, span").Each(func(_ int, s *goquery.Selection) {
		t := collapseSpace(s.Text())
		if len(t) < 400 && n.cta.MatchString(t) {
			s.Remove()
		}
	})
	content, err := body.Html()
	if err != nil {
		return Article{}, invalid("html: %v", err)
	}
	if len(content) > MaxContentLen {
		return Article{}, invalid("content_html: must be at most %d MiB", MaxContentLen>>20)
	}
	// Relative links in the body are relative to where the page lives.
	a.ContentHTML = n.san.sanitize(content, base)
	if err := n.Normalize(&a); err != nil {
		return Article{}, err
	}
	return a, nil
}

// isLDArticle reports whether a JSON-LD @type (a string or a list) names a
// schema.org article type.
func isLDArticle(t any) bool {
	match := func(s string) bool {
		switch strings.TrimPrefix(strings.TrimPrefix(s, "https://schema.org/"), "http://schema.org/") {
		case "NewsArticle", "Article", "ReportageNewsArticle", "AnalysisNewsArticle", "OpinionNewsArticle",
			"BackgroundNewsArticle", "ReviewNewsArticle", "BlogPosting", "LiveBlogPosting", "Report", "ScholarlyArticle":
			return true
		}
		return false
	}
	switch v := t.(type) {
	case string:
		return match(v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && match(s) {
				return true
			}
		}
	}
	return false
}

// findLDArticle returns the first article object in a JSON-LD document: the
// top object, an element of a top array, or a member of @graph.
func findLDArticle(data []byte) map[string]any {
	var doc any
	if err := json.Unmarshal(bytes.TrimSpace(data), &doc); err != nil {
		return nil
	}
	var queue []any
	queue = append(queue, doc)
	for i := 0; i < len(queue) && i < 1000; i++ {
		switch v := queue[i].(type) {
		case []any:
			queue = append(queue, v...)
		case map[string]any:
			if isLDArticle(v["@type"]) {
				return v
			}
			if g, ok := v["@graph"]; ok {
				queue = append(queue, g)
			}
		}
	}
	return nil
}

func ldString(v any) string {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case []any:
		if len(x) > 0 {
			return ldString(x[0])
		}
	case map[string]any:
		return firstNonEmpty(ldString(x["@value"]), ldString(x["name"]))
	}
	return ""
}

// ldNames returns the names of a JSON-LD author: a string, a Person or
// Organization, or a list of them.
func ldNames(v any) []string {
	switch x := v.(type) {
	case string:
		if s := strings.TrimSpace(x); s != "" && !strings.HasPrefix(s, "http") {
			return []string{s}
		}
	case map[string]any:
		if s := ldString(x["name"]); s != "" {
			return []string{s}
		}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, ldNames(e)...)
		}
		return out
	}
	return nil
}

// ldImage returns the URL and caption of a JSON-LD image: a URL, an
// ImageObject, or a list whose first entry is used.
func ldImage(v any) (src, alt string) {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x), ""
	case map[string]any:
		return firstNonEmpty(ldString(x["url"]), ldString(x["contentUrl"])),
			firstNonEmpty(ldString(x["caption"]), ldString(x["description"]))
	case []any:
		if len(x) > 0 {
			return ldImage(x[0])
		}
	}
	return "", ""
}

// ldKeywords returns JSON-LD keywords: a comma-separated string or a list.
func ldKeywords(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		for _, k := range strings.Split(x, ",") {
			if k = strings.TrimSpace(k); k != "" {
				out = append(out, k)
			}
		}
	case []any:
		for _, e := range x {
			if s := ldString(e); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return ""
}
