package articles

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/mmcdole/gofeed"
	"go.yaml.in/yaml/v3"

	"herald"
)

// MaxFileBytes is the largest file ParseFile accepts.
const MaxFileBytes = 32 << 20

// ParseFile is NewNormalizer().ParseFile(path, data).
func ParseFile(path string, data []byte) ([]Article, error) {
	return NewNormalizer().ParseFile(path, data)
}

// ParseFile turns the content of one file into normalised articles whose
// Source is "file:" and the file's base name:
//
//   - Markdown (.md, .markdown, or text that starts with "---") with YAML
//     front matter: one article; keys title, url (required), author,
//     date or published_at, updated_at, summary, tags, image, image_alt;
//   - an RSS, Atom or JSON feed (detected by content): one article per item,
//     items that cannot be articles left out;
//   - an HTML article page (.html, .htm, or text that looks like HTML): one
//     article, see ParseHTMLPage.
//
// Errors are EINVALID and name the file and the field.
func (n *Normalizer) ParseFile(path string, data []byte) ([]Article, error) {
	name := filepath.Base(path)
	source := "file:" + name
	fail := func(err error) ([]Article, error) {
		return nil, herald.Errorf(herald.EINVALID, "%s: %s", name, herald.ErrorMessage(err))
	}
	if len(data) > MaxFileBytes {
		return nil, herald.Errorf(herald.EINVALID, "%s: larger than %s", name, byteSize(MaxFileBytes))
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	ext := strings.ToLower(filepath.Ext(name))
	head := strings.ToLower(string(bytes.TrimSpace(data[:min(len(data), 1024)])))

	switch {
	case ext == ".md" || ext == ".markdown" || strings.HasPrefix(head, "---"):
		a, err := n.parseMarkdown(data, source)
		if err != nil {
			return fail(err)
		}
		return []Article{a}, nil
	case ext == ".html" || ext == ".htm" || looksHTML(head):
		a, err := n.ParseHTMLPage(data, "", source)
		if err != nil {
			return fail(err)
		}
		return []Article{a}, nil
	}
	if gofeed.DetectFeedType(bytes.NewReader(data[:min(len(data), 4096)])) != gofeed.FeedTypeUnknown {
		items, err := n.ParseFeed(bytes.NewReader(data), "", source)
		if err != nil {
			return fail(err)
		}
		return items.Articles, nil
	}
	return nil, herald.Errorf(herald.EINVALID,
		"%s: not a Markdown file with front matter, an HTML page or an RSS, Atom or JSON feed", name)
}

func looksHTML(head string) bool {
	for _, p := range []string{"<!doctype html", "<html", "<head", "<body", "<article", "<meta"} {
		if strings.Contains(head, p) {
			return true
		}
	}
	return false
}

// frontMatter is the YAML block of a Markdown article.
type frontMatter struct {
	Title       yamlText `yaml:"title"`
	URL         yamlText `yaml:"url"`
	Author      yamlList `yaml:"author"`
	Authors     yamlList `yaml:"authors"`
	Date        yamlText `yaml:"date"`
	PublishedAt yamlText `yaml:"published_at"`
	UpdatedAt   yamlText `yaml:"updated_at"`
	Summary     yamlText `yaml:"summary"`
	Description yamlText `yaml:"description"`
	Tags        yamlList `yaml:"tags"`
	Image       yamlText `yaml:"image"`
	ImageAlt    yamlText `yaml:"image_alt"`
}

// yamlText takes any scalar as its text, so that `title: 2026` or an
// unquoted date is not a type error.
type yamlText string

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *yamlText) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a single value", n.Line)
	}
	*t = yamlText(n.Value)
	return nil
}

// yamlList takes a sequence of scalars, or one scalar of comma-separated
// values.
type yamlList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *yamlList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		for _, v := range strings.Split(n.Value, ",") {
			if v = strings.TrimSpace(v); v != "" {
				*l = append(*l, v)
			}
		}
		return nil
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a list of values", c.Line)
			}
			*l = append(*l, c.Value)
		}
		return nil
	}
	return fmt.Errorf("line %d: want a value or a list", n.Line)
}

// splitFrontMatter splits a document that starts with a "---" line into its
// YAML front matter and the body after the closing "---" (or "...") line.
// ok is false when there is no complete front matter block.
func splitFrontMatter(data []byte) (front, body []byte, ok bool) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	line, rest, found := bytes.Cut(data, []byte("\n"))
	if !found || string(bytes.TrimRight(line, " \t\r")) != "---" {
		return nil, data, false
	}
	off := 0
	for off <= len(rest) {
		l, after, more := bytes.Cut(rest[off:], []byte("\n"))
		if t := string(bytes.TrimRight(l, " \t\r")); t == "---" || t == "..." {
			return rest[:off], after, true
		}
		if !more {
			break
		}
		off += len(l) + 1
	}
	return nil, data, false
}

// parseMarkdown reads a Markdown article with YAML front matter.
func (n *Normalizer) parseMarkdown(data []byte, source string) (Article, error) {
	front, body, ok := splitFrontMatter(data)
	if !ok {
		return Article{}, invalid("front matter: missing; start the file with a --- block holding at least title and url")
	}
	fm, err := parseFrontMatter(front)
	if err != nil {
		return Article{}, err
	}
	a := Article{
		URL: string(fm.URL), Title: string(fm.Title), Summary: string(fm.Summary),
		ImageURL: string(fm.Image), ImageAlt: string(fm.ImageAlt), Source: source,
		Tags: fm.Tags,
	}
	if a.Summary == "" {
		a.Summary = string(fm.Description)
	}
	a.Author = strings.Join(append(fm.Author, fm.Authors...), ", ")
	if strings.TrimSpace(string(fm.URL)) == "" {
		return Article{}, invalid("url: is required in the front matter")
	}
	date := fm.PublishedAt
	if date == "" {
		date = fm.Date
	}
	if a.PublishedAt, err = parseDate("date", string(date)); err != nil {
		return Article{}, err
	}
	if a.UpdatedAt, err = parseDate("updated_at", string(fm.UpdatedAt)); err != nil {
		return Article{}, err
	}
	if len(body) > MaxContentLen {
		return Article{}, invalid("content: must be at most %d MiB", MaxContentLen>>20)
	}
	if a.ContentHTML, err = n.RenderMarkdown(body); err != nil {
		return Article{}, err
	}
	if err := n.Normalize(&a); err != nil {
		return Article{}, err
	}
	return a, nil
}

// parseFrontMatter decodes a YAML front matter block. Unknown keys are
// ignored (site generators keep their own there); a malformed block is
// EINVALID.
func parseFrontMatter(front []byte) (*frontMatter, error) {
	var fm frontMatter
	if err := yaml.Unmarshal(front, &fm); err != nil {
		return nil, invalid("front matter: %s", clip(strings.TrimPrefix(err.Error(), "yaml: "), 200))
	}
	return &fm, nil
}

// parseDate parses a date in one of the forms below (one without a zone is
// UTC); "" is the zero time.
func parseDate(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	layouts := [...]string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05Z0700",
		"2006-01-02T15:04:05",
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04",
		"2006-01-02 15:04:05Z07:00",
		"2006-01-02 15:04:05 -0700",
		"2006-01-02 15:04:05 -0700 MST",
		"2006-01-02 15:04:05",
		"2006-01-02 15:04",
		"2006-01-02",
		time.RFC1123Z,
		time.RFC1123,
		"Mon, 2 Jan 2006 15:04:05 -0700",
		"January 2, 2006",
		"2 January 2006",
	}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, invalid("%s: cannot read %q as a date (use 2006-01-02 or 2006-01-02T15:04:05Z07:00)", field, clip(s, 60))
}
