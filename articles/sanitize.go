package articles

import (
	"bytes"
	"net/url"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	gmhtml "github.com/yuin/goldmark/renderer/html"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// sanitizer holds the HTML policy and the Markdown renderer; both are safe
// for concurrent use once built.
type sanitizer struct {
	policy *bluemonday.Policy
	md     goldmark.Markdown
}

func newSanitizer() *sanitizer {
	return &sanitizer{policy: emailPolicy(), md: goldmark.New(
		goldmark.WithExtensions(extension.GFM),
		// Raw HTML in Markdown (a <figure>, say) is kept here and
		// sanitised with everything else afterwards.
		goldmark.WithRendererOptions(gmhtml.WithUnsafe()),
	)}
}

// emailPolicy is a UGC-like policy cut down to what renders in email clients
// and cannot run code: text structure, links, images, figures and simple
// tables, with no scripts, styles, classes, frames, forms or event handlers.
func emailPolicy() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements(
		"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
		"ul", "ol", "li", "dl", "dt", "dd",
		"blockquote", "q", "cite", "figure", "figcaption",
		"em", "strong", "b", "i", "u", "s", "del", "ins", "mark", "small", "sub", "sup",
		"abbr", "code", "pre", "kbd", "samp", "var", "time",
		"table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
	)
	p.AllowAttrs("href", "title").OnElements("a")
	p.AllowAttrs("src", "alt", "title").OnElements("img")
	p.AllowAttrs("width", "height").Matching(bluemonday.Number).OnElements("img")
	p.AllowAttrs("colspan", "rowspan").Matching(bluemonday.Number).OnElements("th", "td")
	p.AllowAttrs("start").Matching(bluemonday.Number).OnElements("ol")
	p.AllowAttrs("title").OnElements("abbr")
	p.AllowURLSchemes("http", "https", "mailto")
	p.RequireParseableURLs(true)
	p.AllowRelativeURLs(false)
	// Opens links in a new window with rel="noopener", so that the target
	// page cannot reach back into the web view of the mail or archive.
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return p
}

// markdown renders src to (unsanitised) HTML.
func (s *sanitizer) markdown(src []byte) (string, error) {
	var b bytes.Buffer
	if err := s.md.Convert(src, &b); err != nil {
		return "", invalid("content_markdown: %v", err)
	}
	return b.String(), nil
}

// sanitize resolves relative URLs in h against base, drops images that are
// not http(s), and applies the policy.
func (s *sanitizer) sanitize(h, base string) string {
	return strings.TrimSpace(s.policy.Sanitize(resolveURLs(h, base)))
}

// resolveURLs parses h as a fragment of a <body>, makes a[href] and
// img[src] absolute against base, removes images without an http(s) source
// (a data: or javascript: image, or one whose src the policy would drop),
// and renders it back.
func resolveURLs(h, base string) string {
	b, err := url.Parse(base)
	if err != nil || !b.IsAbs() {
		b = nil
	}
	ctx := &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body}
	nodes, err := html.ParseFragment(strings.NewReader(h), ctx)
	if err != nil {
		return h
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		for c := n.FirstChild; c != nil; {
			next := c.NextSibling
			if c.Type == html.ElementNode {
				switch c.DataAtom {
				case atom.A:
					resolveAttr(c, "href", b)
				case atom.Img:
					resolveAttr(c, "src", b)
					if src := attr(c, "src"); !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
						n.RemoveChild(c)
					}
				}
				walk(c)
			}
			c = next
		}
	}
	var out strings.Builder
	root := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	for _, n := range nodes {
		root.AppendChild(n)
	}
	walk(root)
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		if err := html.Render(&out, c); err != nil {
			return h
		}
	}
	return out.String()
}

// resolveAttr makes the URL in attribute key absolute against base (when
// base is known), leaving what does not parse for the policy to drop.
func resolveAttr(n *html.Node, key string, base *url.URL) {
	for i, a := range n.Attr {
		if a.Namespace != "" || a.Key != key {
			continue
		}
		v := strings.TrimSpace(a.Val)
		r, err := url.Parse(v)
		if err != nil {
			return
		}
		if !r.IsAbs() && base != nil && !strings.HasPrefix(v, "#") {
			r = base.ResolveReference(r)
		}
		if r.Scheme == "http" || r.Scheme == "https" {
			r.Scheme = strings.ToLower(r.Scheme)
		}
		n.Attr[i].Val = r.String()
		return
	}
}

// attr returns the value of n's attribute key, or "".
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}
