package articles

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"herald"
)

// Normalizer validates articles and cleans their content: it holds the
// sanitising policy and the Markdown renderer, which are built once and safe
// for concurrent use.
type Normalizer struct {
	san *sanitizer
	// cta matches the short blocks of a page that ask the reader to
	// subscribe, share or comment rather than tell the story.
	cta *regexp.Regexp
}

// NewNormalizer returns a Normalizer with Herald's email-safe HTML policy.
func NewNormalizer() *Normalizer {
	return &Normalizer{san: newSanitizer(), cta: regexp.MustCompile(`(?i)^\s*(don[’'‘]?t miss a story|` +
		`subscribe\b|sign up (for|to)\b|get our newsletter|join our newsletter|we respect your privacy|` +
		`share this( article| story)?:?$|leave a (comment|reply)|related (posts|stories|articles):?$)`)}
}

// Normalize is NewNormalizer().Normalize(a), for one-off use.
func Normalize(a *Article) error { return NewNormalizer().Normalize(a) }

// Normalize validates a and puts it in the form Herald stores, in place:
//
//   - URL: required, absolute http or https, at most MaxURLLen; made
//     canonical (lower-case scheme and host, no default port, no fragment,
//     no utm_* tracking parameters);
//   - Title: required, whitespace collapsed, at most MaxTitleLen characters,
//     no control characters; Author and ImageAlt likewise, optional;
//   - Tags: trimmed, lower-cased, deduplicated and sorted, at most MaxTags;
//   - ContentHTML: at most MaxContentLen, relative URLs resolved against URL,
//     then sanitised; ContentText is rendered from it (kept as given when
//     there is no HTML); Summary is whitespace-collapsed plain text;
//   - Excerpt, when empty, is cut from Summary or ContentText;
//   - ImageURL, when set, is resolved against URL and must be http(s);
//   - Hash is computed last.
//
// Every error is a *herald.Error with code EINVALID whose message starts
// with the field's name: "url: must be an absolute http or https URL".
// Normalize leaves a zero PublishedAt alone: Service.Upsert defaults it to
// now for a new article and keeps the stored date for a known one, so that
// re-importing an undated file does not look like an edit. Normalizing an
// already normalised article changes nothing.
func (n *Normalizer) Normalize(a *Article) error {
	u, err := CanonicalURL(a.URL)
	if err != nil {
		return err
	}
	a.URL = u

	if a.GUID = strings.TrimSpace(a.GUID); len(a.GUID) > MaxURLLen {
		return invalid("guid: must be at most %d bytes", MaxURLLen)
	}
	if a.Title, err = cleanLine("title", a.Title, MaxTitleLen); err != nil {
		return err
	}
	if a.Title == "" {
		return invalid("title: is required")
	}
	if a.Author, err = cleanLine("author", a.Author, MaxAuthorLen); err != nil {
		return err
	}
	if a.ImageAlt, err = cleanLine("image_alt", a.ImageAlt, MaxTitleLen); err != nil {
		return err
	}
	if a.Tags, err = normalizeTags(a.Tags); err != nil {
		return err
	}
	if len(a.Summary) > MaxSummaryLen {
		return invalid("summary: must be at most %d KiB", MaxSummaryLen>>10)
	}
	a.Summary = collapseSpace(stripControl(a.Summary))

	if len(a.ContentHTML) > MaxContentLen {
		return invalid("content_html: must be at most %d MiB", MaxContentLen>>20)
	}
	if strings.TrimSpace(a.ContentHTML) != "" {
		a.ContentHTML = n.san.sanitize(a.ContentHTML, a.URL)
		a.ContentText = HTMLToText(a.ContentHTML)
	} else {
		a.ContentHTML = ""
		if len(a.ContentText) > MaxContentLen {
			return invalid("content_text: must be at most %d MiB", MaxContentLen>>20)
		}
		a.ContentText = strings.TrimSpace(stripControl(a.ContentText))
	}

	if a.ImageURL = strings.TrimSpace(a.ImageURL); a.ImageURL != "" {
		img, ok := resolveHTTP(a.URL, a.ImageURL)
		if !ok || len(img) > MaxURLLen {
			return invalid("image_url: must be an absolute http or https URL")
		}
		a.ImageURL = img
	}

	a.Excerpt = collapseSpace(stripControl(a.Excerpt))
	if a.Excerpt == "" {
		from := a.Summary
		if from == "" {
			from = a.ContentText
		}
		a.Excerpt = MakeExcerpt(from, ExcerptLen)
	} else {
		a.Excerpt = MakeExcerpt(a.Excerpt, ExcerptLen)
	}
	a.Source = strings.TrimSpace(a.Source)

	if !a.PublishedAt.IsZero() {
		a.PublishedAt = a.PublishedAt.UTC().Truncate(time.Millisecond)
	}
	if !a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.UpdatedAt.UTC().Truncate(time.Millisecond)
	}
	a.Hash = a.ComputeHash()
	return nil
}

// RenderMarkdown renders Markdown (CommonMark with GitHub's tables,
// strikethrough and autolinks) to HTML. The HTML is not sanitised yet:
// Normalize does that, so put it in ContentHTML.
func (n *Normalizer) RenderMarkdown(src []byte) (string, error) {
	return n.san.markdown(src)
}

// SanitizeHTML resolves the relative URLs in s against base and returns it
// sanitised with Herald's email-safe policy.
func (n *Normalizer) SanitizeHTML(s, base string) string {
	return n.san.sanitize(s, base)
}

// ComputeHash returns the hex SHA-256 of the fields a reader sees (URL,
// GUID, title, author, dates of publication, summary, content, excerpt,
// image, tags), each length-prefixed so that no two articles share an
// encoding. ID, Source and the bookkeeping times are left out.
func (a *Article) ComputeHash() string {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field("herald-article-v1")
	field(a.URL)
	field(a.GUID)
	field(a.Title)
	field(a.Author)
	var pub int64
	if !a.PublishedAt.IsZero() {
		pub = a.PublishedAt.UnixMilli()
	}
	binary.BigEndian.PutUint64(n[:], uint64(pub))
	h.Write(n[:])
	field(a.Summary)
	field(a.ContentHTML)
	field(a.ContentText)
	field(a.Excerpt)
	field(a.ImageURL)
	field(a.ImageAlt)
	binary.BigEndian.PutUint64(n[:], uint64(len(a.Tags)))
	h.Write(n[:])
	for _, t := range a.Tags {
		field(t)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func invalid(format string, args ...any) error {
	return herald.Errorf(herald.EINVALID, format, args...)
}

// CanonicalURL checks that raw is an absolute http or https URL of at most
// MaxURLLen bytes and returns its canonical form: scheme and host lower
// case, default port, fragment, empty query and utm_* parameters removed,
// an empty path made "/". The error is EINVALID naming the field "url".
func CanonicalURL(raw string) (string, error) {
	bad := invalid("url: must be an absolute http or https URL")
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", invalid("url: is required")
	}
	if len(raw) > MaxURLLen {
		return "", invalid("url: must be at most %d characters", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil {
		return "", bad
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", bad
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.ContainsAny(host, " \t\r\n") {
		return "", bad
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	u.Fragment, u.RawFragment = "", ""
	if u.Path == "" {
		u.Path, u.RawPath = "/", ""
	}
	if u.RawQuery != "" {
		q := u.Query()
		drop := false
		for k := range q {
			if strings.HasPrefix(strings.ToLower(k), "utm_") {
				drop = true
				q.Del(k)
			}
		}
		if drop {
			u.RawQuery = q.Encode()
		}
	}
	u.ForceQuery = false
	s := u.String()
	if len(s) > MaxURLLen {
		return "", invalid("url: must be at most %d characters", MaxURLLen)
	}
	return s, nil
}

// resolveHTTP resolves ref against base and reports whether the result is
// an absolute http(s) URL.
func resolveHTTP(base, ref string) (string, bool) {
	r, err := url.Parse(strings.TrimSpace(ref))
	if err != nil {
		return "", false
	}
	if !r.IsAbs() {
		b, err := url.Parse(base)
		if err != nil || !b.IsAbs() {
			return "", false
		}
		r = b.ResolveReference(r)
	}
	if (r.Scheme != "http" && r.Scheme != "https") || r.Host == "" {
		return "", false
	}
	return r.String(), true
}

// cleanLine collapses whitespace in a one-line field, rejects other control
// characters and invalid UTF-8, and checks the length in characters.
func cleanLine(field, s string, maxLen int) (string, error) {
	if !utf8.ValidString(s) {
		return "", invalid("%s: must be valid UTF-8", field)
	}
	s = collapseSpace(s)
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", invalid("%s: must not contain control characters", field)
		}
	}
	if n := utf8.RuneCountInString(s); n > maxLen {
		return "", invalid("%s: must be at most %d characters, got %d", field, maxLen, n)
	}
	return s, nil
}

// collapseSpace trims s and turns every run of white space into one space.
func collapseSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// stripControl removes control characters other than tab and newlines, and
// replaces invalid UTF-8.
func stripControl(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' || !unicode.IsControl(r) {
			return r
		}
		return -1
	}, s)
}

// normalizeTags trims, lower-cases, deduplicates and sorts tags.
func normalizeTags(tags []string) ([]string, error) {
	var out []string
	for _, t := range tags {
		t, err := cleanLine("tags", strings.ToLower(t), MaxTagLen)
		if err != nil {
			return nil, err
		}
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > MaxTags {
		return nil, invalid("tags: must be at most %d, got %d", MaxTags, len(out))
	}
	slices.Sort(out)
	return out, nil
}

// capTags keeps the first MaxTags distinct non-empty tags, for sources (feeds,
// pages) whose tag lists Herald does not control.
func capTags(tags []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range tags {
		k := collapseSpace(strings.ToLower(t))
		if k == "" || seen[k] || utf8.RuneCountInString(k) > MaxTagLen {
			continue
		}
		seen[k] = true
		out = append(out, k)
		if len(out) == MaxTags {
			break
		}
	}
	return out
}

// MakeExcerpt returns text with its white space collapsed, cut to at most
// maxLen characters: at the end of a sentence when one ends in the second half
// of the allowance, else at a word boundary, with an ellipsis ("…") added.
// Text that fits is returned whole.
func MakeExcerpt(text string, maxLen int) string {
	text = collapseSpace(text)
	if utf8.RuneCountInString(text) <= maxLen {
		return text
	}
	runes := []rune(text)
	if maxLen < 3 {
		return string(runes[:max(maxLen, 0)])
	}
	limit := maxLen - 2 // room for " …"
	cut := runes[:limit]
	// A sentence end: ., ! or ? followed by a space, in the second half.
	for i := len(cut) - 1; i >= limit/2; i-- {
		if (cut[i] == '.' || cut[i] == '!' || cut[i] == '?') && i+1 < len(runes) && runes[i+1] == ' ' {
			return string(cut[:i+1]) + " …"
		}
	}
	// A word boundary: the last space before the limit, unless the next
	// character already is one.
	if runes[limit] != ' ' {
		if i := lastSpace(cut); i > 0 {
			cut = cut[:i]
		}
	}
	s := strings.TrimRight(string(cut), " ,;:-–—")
	return s + "…"
}

func lastSpace(rs []rune) int {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i] == ' ' {
			return i
		}
	}
	return -1
}
