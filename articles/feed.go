package articles

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mmcdole/gofeed"
	ext "github.com/mmcdole/gofeed/extensions"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"herald"
)

// FeedItems is the outcome of parsing one feed document.
type FeedItems struct {
	Title    string    // the feed's title
	Articles []Article // normalised, in document order
	// Skipped lists why items were left out (no link, no title, invalid),
	// one sentence per item.
	Skipped []string
}

// ParseFeed parses an RSS 2.0 (or 0.9x/1.0), Atom 1.0 or JSON Feed document
// read from r, detected by content, and maps each item to a normalised
// Article whose Source is source. Relative links are resolved against
// feedURL (and the feed's own link when feedURL is ""). An item that cannot
// become an article is skipped with a reason; only a document that is not a
// feed at all is an error (EINVALID).
//
// The XML parser is Go's encoding/xml, which never expands entities a
// document declares in its DTD, so "billion laughs" input stays as small as
// it came; the caller bounds the size of r.
func (n *Normalizer) ParseFeed(r io.Reader, feedURL, source string) (*FeedItems, error) {
	fp := gofeed.NewParser()
	f, err := fp.Parse(r)
	if err != nil {
		if errors.Is(err, gofeed.ErrFeedTypeNotDetected) {
			return nil, herald.Errorf(herald.EINVALID, "not a feed: no RSS, Atom or JSON Feed document found")
		}
		return nil, herald.Errorf(herald.EINVALID, "not a feed: %s", clip(err.Error(), 200))
	}
	if f.FeedType == "json" && !strings.Contains(f.FeedVersion, "jsonfeed.org") {
		return nil, herald.Errorf(herald.EINVALID, "not a feed: JSON without a JSON Feed version")
	}
	base := feedURL
	if base == "" {
		if u, ok := resolveHTTP("", f.Link); ok {
			base = u
		} else if u, ok := resolveHTTP("", f.FeedLink); ok {
			base = u
		}
	}
	out := &FeedItems{Title: collapseSpace(f.Title)}
	for i, it := range f.Items {
		if it == nil {
			continue
		}
		a, why := itemArticle(it, base, source)
		if why == "" {
			if err := n.Normalize(&a); err != nil {
				why = herald.ErrorMessage(err)
			}
		}
		if why != "" {
			out.Skipped = append(out.Skipped, fmt.Sprintf("item %d: %s", i+1, why))
			continue
		}
		out.Articles = append(out.Articles, a)
	}
	return out, nil
}

// itemArticle maps a feed item to an Article, not yet normalised; why says
// why it cannot be one.
func itemArticle(it *gofeed.Item, base, source string) (a Article, why string) {
	a.Source = source
	a.GUID = strings.TrimSpace(it.GUID)
	for _, l := range append([]string{it.Link}, it.Links...) {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if u, ok := resolveHTTP(base, l); ok {
			a.URL = u
			break
		}
	}
	if a.URL == "" {
		// An RSS guid with isPermaLink is the item's URL.
		if u, ok := resolveHTTP("", a.GUID); ok {
			a.URL = u
		}
	}
	if a.URL == "" {
		return a, "it has no http(s) link"
	}

	content, desc := strings.TrimSpace(it.Content), strings.TrimSpace(it.Description)
	if content != "" {
		a.ContentHTML = content
		if desc != "" {
			a.Summary = HTMLToText(desc)
		}
	} else {
		a.ContentHTML = desc
	}
	if len(a.ContentHTML) > MaxContentLen {
		return a, fmt.Sprintf("its content is larger than %d MiB", MaxContentLen>>20)
	}
	if len(a.Summary) > MaxSummaryLen {
		a.Summary = MakeExcerpt(a.Summary, 1000)
	}

	a.Title = textOf(it.Title)
	if a.Title == "" {
		// RSS allows an item with a description only; its start stands in.
		from := a.Summary
		if from == "" {
			from = HTMLToText(a.ContentHTML)
		}
		a.Title = MakeExcerpt(from, 100)
	}
	if a.Title == "" {
		return a, "it has no title"
	}
	a.Title = MakeExcerpt(a.Title, MaxTitleLen)

	var names []string
	for _, p := range it.Authors {
		if p != nil && strings.TrimSpace(p.Name) != "" {
			names = append(names, strings.TrimSpace(p.Name))
		}
	}
	if len(names) == 0 && it.Author != nil {
		names = append(names, strings.TrimSpace(it.Author.Name))
	}
	if len(names) == 0 && it.DublinCoreExt != nil && len(it.DublinCoreExt.Creator) > 0 {
		names = append(names, it.DublinCoreExt.Creator...)
	}
	a.Author = MakeExcerpt(textOf(strings.Join(names, ", ")), MaxAuthorLen)

	if it.PublishedParsed != nil {
		a.PublishedAt = *it.PublishedParsed
	} else if it.UpdatedParsed != nil {
		a.PublishedAt = *it.UpdatedParsed
	}
	if it.UpdatedParsed != nil {
		a.UpdatedAt = *it.UpdatedParsed
	}
	if a.PublishedAt.Year() < 1990 {
		a.PublishedAt = time.Time{} // a zero or nonsense date: let the upsert date it
	}

	a.ImageURL, a.ImageAlt = itemImage(it, a.URL)
	a.Tags = capTags(it.Categories)
	return a, ""
}

// textOf returns s as plain text: feeds put escaped HTML in titles and
// names now and then.
func textOf(s string) string {
	if strings.ContainsAny(s, "<&") {
		s = HTMLToText(s)
	}
	return collapseSpace(stripControl(s))
}

// itemImage picks an item's image: media:content or media:thumbnail, an
// image enclosure, gofeed's pick (itunes:image and the like), then the first
// <img> of the content; with its alt text where the source gives one.
func itemImage(it *gofeed.Item, base string) (src, alt string) {
	try := func(u, a string) bool {
		if r, ok := resolveHTTP(base, u); ok && len(r) <= MaxURLLen {
			src, alt = r, collapseSpace(a)
			return true
		}
		return false
	}
	if media := it.Extensions["media"]; media != nil {
		var cands []ext.Extension
		for _, g := range media["group"] {
			cands = append(cands, g.Children["content"]...)
		}
		cands = append(cands, media["content"]...)
		for _, c := range cands {
			if (strings.HasPrefix(c.Attrs["type"], "image/") || c.Attrs["medium"] == "image" ||
				(c.Attrs["type"] == "" && c.Attrs["medium"] == "")) && try(c.Attrs["url"], mediaText(c)) {
				return src, alt
			}
		}
		for _, c := range media["thumbnail"] {
			if try(c.Attrs["url"], "") {
				return src, alt
			}
		}
	}
	for _, e := range it.Enclosures {
		if e != nil && strings.HasPrefix(e.Type, "image/") && try(e.URL, "") {
			return src, alt
		}
	}
	if it.Image != nil && try(it.Image.URL, it.Image.Title) {
		return src, alt
	}
	if s, a := firstImage(it.Content); s != "" && try(s, a) {
		return src, alt
	}
	if s, a := firstImage(it.Description); s != "" && try(s, a) {
		return src, alt
	}
	return "", ""
}

// mediaText returns the media:description (or media:title) of a media
// element, the nearest thing feeds have to alt text.
func mediaText(e ext.Extension) string {
	for _, k := range []string{"description", "title", "text"} {
		for _, c := range e.Children[k] {
			if t := textOf(c.Value); t != "" {
				return t
			}
		}
	}
	return ""
}

// firstImage returns the src and alt of the first <img> in an HTML fragment.
func firstImage(s string) (src, alt string) {
	if !strings.Contains(s, "<img") && !strings.Contains(s, "<IMG") {
		return "", ""
	}
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return "", ""
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			if t.DataAtom != atom.Img {
				continue
			}
			for _, a := range t.Attr {
				switch a.Key {
				case "src":
					src = a.Val
				case "alt":
					alt = a.Val
				}
			}
			if src != "" {
				return src, alt
			}
		}
	}
}

// clip cuts s to at most n bytes at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
