package articles

import (
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxTextDepth bounds the recursion of HTMLToText; deeper elements are
// flattened to their text.
const maxTextDepth = 200

// HTMLToText renders an HTML fragment as plain text for the text part of an
// email: paragraphs and headings separated by a blank line, list items with
// "- " (or "1. ") bullets, quotes prefixed with "> ", a link's URL in
// brackets after its text when the two differ, white space collapsed, and
// scripts, styles and images left out.
func HTMLToText(s string) string {
	ctx := &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body}
	nodes, err := html.ParseFragment(strings.NewReader(s), ctx)
	if err != nil {
		// Too deep for the tree builder: keep the words, in blocks.
		return tokenText(s)
	}
	w := &textWriter{}
	for _, n := range nodes {
		w.node(n, 0)
	}
	return w.String()
}

// textWriter accumulates text, turning requested line breaks and pending
// spaces into output only when more text follows.
type textWriter struct {
	b       strings.Builder
	breaks  int  // newlines owed before the next text
	space   bool // a space owed before the next text
	started bool
}

// String returns the text written, without trailing white space.
func (w *textWriter) String() string { return strings.TrimRight(w.b.String(), " \n") }

// brk asks for at least n newlines before the next text.
func (w *textWriter) brk(n int) { w.breaks = max(w.breaks, n) }

// text writes inline text, collapsing its white space.
func (w *textWriter) text(s string) {
	if s == "" {
		return
	}
	lead := isSpace(s[0])
	trail := isSpace(s[len(s)-1])
	f := strings.Fields(s)
	if len(f) == 0 {
		w.space = w.space || lead || trail
		return
	}
	w.raw(strings.Join(f, " "), lead)
	w.space = trail
}

// raw writes s as is, after the owed breaks (or space, when sp or one is owed).
func (w *textWriter) raw(s string, sp bool) {
	if s == "" {
		return
	}
	if w.started {
		if n := w.breaks - w.trailingNewlines(); w.breaks > 0 && n > 0 {
			w.b.WriteString(strings.Repeat("\n", n))
		} else if w.breaks == 0 && (w.space || sp) {
			w.b.WriteByte(' ')
		}
	}
	w.b.WriteString(s)
	w.started, w.breaks, w.space = true, 0, false
}

// trailingNewlines counts the newlines at the end of the text written.
func (w *textWriter) trailingNewlines() int {
	s := w.b.String()
	n := 0
	for n < len(s) && s[len(s)-1-n] == '\n' {
		n++
	}
	return n
}

// block writes a multi-line block produced by a nested writer, each line
// prefixed: first for the first line, rest for the others.
func (w *textWriter) block(inner, first, rest string) {
	if inner == "" {
		return
	}
	lines := strings.Split(inner, "\n")
	for i, l := range lines {
		p := rest
		if i == 0 {
			p = first
		}
		if l == "" {
			p = strings.TrimRight(p, " ")
		}
		lines[i] = p + l
	}
	w.raw(strings.Join(lines, "\n"), false)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func (w *textWriter) children(n *html.Node, depth int) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		w.node(c, depth+1)
	}
}

func (w *textWriter) node(n *html.Node, depth int) {
	switch n.Type {
	case html.TextNode:
		w.text(n.Data)
		return
	case html.ElementNode:
	case html.DocumentNode:
		w.children(n, depth)
		return
	default:
		return
	}
	if depth > maxTextDepth {
		w.text(flatText(n))
		return
	}
	switch n.DataAtom {
	case atom.Script, atom.Style, atom.Head, atom.Template, atom.Noscript, atom.Img,
		atom.Iframe, atom.Object, atom.Embed, atom.Svg, atom.Math, atom.Button, atom.Select:
		return
	case atom.Br:
		// A <br> breaks the line even after another one, up to one blank
		// line.
		if w.started {
			tn := w.trailingNewlines()
			if want := min(max(w.breaks, tn+1), 2); want > tn {
				w.b.WriteString(strings.Repeat("\n", want-tn))
			}
		}
		w.breaks, w.space = 0, false
		return
	case atom.Hr:
		w.brk(2)
		w.raw("---", false)
		w.brk(2)
		return
	case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Figure,
		atom.Table, atom.Dl, atom.Address, atom.Details:
		w.brk(2)
		w.children(n, depth)
		w.brk(2)
		return
	case atom.Pre:
		w.brk(2)
		w.raw(strings.Trim(flatText(n), "\n"), false)
		w.brk(2)
		return
	case atom.Blockquote:
		inner := &textWriter{}
		inner.children(n, depth)
		w.brk(2)
		w.block(inner.String(), "> ", "> ")
		w.brk(2)
		return
	case atom.Ul, atom.Ol:
		w.brk(2)
		w.list(n, depth)
		w.brk(2)
		return
	case atom.Li:
		// An <li> outside a list.
		inner := &textWriter{}
		inner.children(n, depth)
		w.brk(1)
		w.block(inner.String(), "- ", "  ")
		w.brk(1)
		return
	case atom.Tr:
		w.brk(1)
		first := true
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && (c.DataAtom == atom.Td || c.DataAtom == atom.Th) {
				inner := &textWriter{}
				inner.children(c, depth+1)
				cell := collapseSpace(inner.String())
				if !first {
					cell = "| " + cell
				}
				w.raw(cell, !first)
				first = false
			}
		}
		w.brk(1)
		return
	case atom.A:
		inner := &textWriter{}
		inner.children(n, depth)
		label := inner.String()
		href := strings.TrimSpace(attr(n, "href"))
		w.inline(label)
		if href != "" && linkDiffers(label, href) && (strings.HasPrefix(href, "http://") ||
			strings.HasPrefix(href, "https://") || strings.HasPrefix(href, "mailto:")) {
			if label == "" {
				w.raw(strings.TrimPrefix(href, "mailto:"), true)
			} else {
				w.raw("("+href+")", true)
			}
		}
		return
	}
	if isBlock(n.DataAtom) {
		w.brk(1)
		w.children(n, depth)
		w.brk(1)
		return
	}
	w.children(n, depth)
}

// inline writes text that a nested writer produced, keeping its own breaks.
func (w *textWriter) inline(s string) {
	if s == "" {
		return
	}
	w.raw(s, w.space)
}

// list writes the items of a <ul> or <ol>.
func (w *textWriter) list(n *html.Node, depth int) {
	num := 1
	if n.DataAtom == atom.Ol {
		if v, err := strconv.Atoi(attr(n, "start")); err == nil && v >= 0 && v < 1_000_000 {
			num = v
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode {
			continue
		}
		inner := &textWriter{}
		if c.DataAtom == atom.Li {
			inner.children(c, depth+1)
		} else {
			inner.node(c, depth+1)
		}
		bullet := "- "
		if n.DataAtom == atom.Ol {
			bullet = strconv.Itoa(num) + ". "
			num++
		}
		w.brk(1)
		w.block(inner.String(), bullet, strings.Repeat(" ", len(bullet)))
		w.brk(1)
	}
}

// linkDiffers reports whether a link's text says something other than its
// URL (ignoring scheme, "mailto:", "www." and a trailing slash).
func linkDiffers(label, href string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		for _, p := range []string{"mailto:", "https://", "http://", "www."} {
			s = strings.TrimPrefix(s, p)
		}
		return strings.TrimSuffix(s, "/")
	}
	return norm(label) != norm(href)
}

// flatText returns the text content of n, iteratively (no recursion).
func flatText(n *html.Node) string {
	var b strings.Builder
	stack := []*html.Node{n}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
			continue
		}
		if c.Type == html.ElementNode && (c.DataAtom == atom.Script || c.DataAtom == atom.Style) {
			continue
		}
		for k := c.LastChild; k != nil; k = k.PrevSibling {
			stack = append(stack, k)
		}
	}
	return b.String()
}

// isBlock reports whether elements of that kind start on a new line.
func isBlock(a atom.Atom) bool {
	switch a {
	case atom.Div, atom.Section, atom.Article, atom.Header, atom.Footer, atom.Main, atom.Nav,
		atom.Aside, atom.Figcaption, atom.Caption, atom.Dt, atom.Dd, atom.Form, atom.Fieldset,
		atom.Summary, atom.Thead, atom.Tbody, atom.Tfoot, atom.Body, atom.Html, atom.Center:
		return true
	}
	return false
}

// tokenText is the fallback of HTMLToText for input the parser refuses: the
// text of every token outside scripts and styles, a blank line at each block
// boundary.
func tokenText(s string) string {
	w := &textWriter{}
	z := html.NewTokenizer(strings.NewReader(s))
	skip := 0
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return w.String()
		case html.TextToken:
			if skip == 0 {
				w.text(string(z.Text()))
			}
		case html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			switch {
			case a == atom.Script || a == atom.Style:
				if tt == html.StartTagToken {
					skip++
				} else if skip > 0 {
					skip--
				}
			case a == atom.Br:
				w.brk(1)
			case a == atom.P || a == atom.Li || isBlock(a):
				w.brk(2)
			}
		}
	}
}
