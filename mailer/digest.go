package mailer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	htemplate "html/template"
	"net/url"
	"slices"
	"strings"
	ttemplate "text/template"
	"time"

	"github.com/vanng822/go-premailer/premailer"
	"golang.org/x/net/html"
)

// DigestData is one edition of a newsletter: everything its email says that
// is the same for every reader.
type DigestData struct {
	NewsletterID          string // the newsletter's id, e.g. "daily"; names the List-Id
	NewsletterName        string
	NewsletterDescription string // optional, shown under the greeting
	IssueID               int64
	Subject               string // empty: "<NewsletterName>, <date>"
	Date                  time.Time
	Articles              []DigestArticle
	ArchiveURL            string // this issue in the web archive ("View in your browser"); optional
	// Headers are more header fields every reader's message carries, after
	// List-Id (CFBL-Address, Feedback-ID: FeedbackHeaders); optional.
	Headers []Header
}

// DigestArticle is one article in a digest. URL is required; ImageURL,
// Author and PublishedAt are optional. ImageAlt defaults to the title.
type DigestArticle struct {
	Title       string
	URL         string
	Author      string
	PublishedAt time.Time
	ImageURL    string
	ImageAlt    string
	Excerpt     string
}

// DigestReader is what a digest says to one reader. Both URLs are required
// and arrive complete, with their tokens.
type DigestReader struct {
	MessageID      string // without angle brackets; stable across retries
	To             string // bare address
	Name           string // as given; cleaned as Compose does
	UnsubscribeURL string
	PreferencesURL string
}

// digestTemplates are the parsed digest templates and what the digest
// List-Id is built from.
type digestTemplates struct {
	text   *ttemplate.Template
	html   *htemplate.Template
	domain string // List-Id domain: "<newsletter-id>.<domain>"
}

// slot is a per-reader value in a prepared digest.
type slot uint8

const (
	slotNone slot = iota
	slotName
	slotUnsubscribe
	slotPreferences
	numSlots
)

// digestPiece is a run of a prepared body: static text, or a slot.
type digestPiece struct {
	slot slot
	raw  string // decoded static text
	enc  []byte // raw, quoted-printable (appendQPSegment)
	last bool   // the last piece of its part
}

// digestBody is one rendering of a digest: text and HTML pieces.
type digestBody struct {
	text, html       []digestPiece
	textLen, htmlLen int // length of the static text
	encLen           int // length of the encoded static pieces
}

// DigestTemplate is one edition of a digest, rendered, CSS-inlined and
// quoted-printable encoded once by Composer.PrepareDigest, from which each
// reader's message is spliced (AppendTo, Email). It is immutable and safe for
// concurrent use.
type DigestTemplate struct {
	fromName, from, replyTo, subject string
	listID                           string   // List-Id value
	extra                            []Header // DigestData.Headers

	fromHdr []byte // "From: ...\r\n"
	midHdr  []byte // "Reply-To: ...\r\nSubject: ...\r\n"
	tailHdr []byte // "List-Unsubscribe-Post: ...\r\nList-Id: ...\r\n"
	// named is rendered with the Name placeholder; anonymous with no name
	// ("Hi there,"), for the readers whose name is left out.
	named, anonymous digestBody
}

// PrepareDigest renders the digest for d once: the text and HTML templates
// (email/digest.*.tmpl) run with unique placeholders for the per-reader
// values (the reader's name, UnsubscribeURL, PreferencesURL), the HTML's
// <style> block is inlined (go-premailer; the media queries for dark mode and
// narrow screens stay in a <style> block), and the static runs between the
// placeholders are quoted-printable encoded. It renders twice, with and
// without a name, because templates branch on it.
//
// Errors wrap ErrInvalidEmail for bad data: a NewsletterID that cannot name
// a List-Id, an empty NewsletterName, no articles, an article without a
// title or with a URL, image URL or archive URL that is not absolute http(s),
// control characters in the subject or newsletter name. A template override
// that leaves out the unsubscribe link or the postal address, or puts a
// per-reader value where it cannot be spliced, is an error too.
func (c *Composer) PrepareDigest(d DigestData) (*DigestTemplate, error) {
	if err := c.checkDigest(&d); err != nil {
		return nil, fmt.Errorf("prepare digest %s: %w", d.NewsletterID, err)
	}
	subject := d.Subject
	if subject == "" {
		subject = d.NewsletterName + ", " + d.Date.Format("January 2, 2006")
	}
	if err := checkText("Subject", subject); err != nil {
		return nil, fmt.Errorf("prepare digest %s: %w", d.NewsletterID, err)
	}
	for _, h := range d.Headers {
		if err := checkHeader(h); err != nil {
			return nil, fmt.Errorf("prepare digest %s: %w", d.NewsletterID, err)
		}
	}
	v := c.digestView(&d, subject)
	marker := "hrld" + digestNonce(&c.cfg, &d)
	v.UnsubscribeURL = marker + string(rune('0'+slotUnsubscribe))
	v.PreferencesURL = marker + string(rune('0'+slotPreferences))

	t := &DigestTemplate{
		fromName: c.cfg.FromName,
		from:     c.cfg.From,
		replyTo:  c.cfg.ReplyTo,
		subject:  subject,
		extra:    slices.Clone(d.Headers),
	}
	t.listID = string(appendPhrase(nil, d.NewsletterName, -len("List-Id: "))) + " <" + d.NewsletterID + "." + c.digest.domain + ">"
	for _, variant := range []struct {
		body *digestBody
		name string
	}{
		{&t.named, marker + string(rune('0'+slotName))},
		{&t.anonymous, ""},
	} {
		v.Name = variant.name
		text, htmlPart, err := c.renderDigest(v)
		if err != nil {
			return nil, fmt.Errorf("prepare digest %s: %w", d.NewsletterID, err)
		}
		if err := c.splitDigest(variant.body, text, htmlPart, marker); err != nil {
			return nil, fmt.Errorf("prepare digest %s%s: %w", d.NewsletterID, c.tset.describe(), err)
		}
	}

	// The header lines that do not change from reader to reader, encoded as
	// Email.AppendTo encodes them.
	b := []byte("From: ")
	b = appendNameAddr(b, t.fromName, t.from, 0)
	t.fromHdr = foldLast(b, 0)
	var mid []byte
	if t.replyTo != "" {
		mid = append(mid, "Reply-To: <"...)
		mid = append(mid, t.replyTo...)
		mid = append(mid, ">\r\n"...)
	}
	start := len(mid)
	mid = append(mid, "Subject: "...)
	if isPrintableASCII(subject) {
		mid = append(mid, subject...)
	} else {
		mid = appendEncodedWords(mid, subject, false, start)
	}
	t.midHdr = foldLast(mid, start)
	for _, h := range t.staticHeaders() {
		start := len(t.tailHdr)
		t.tailHdr = append(t.tailHdr, h.Name...)
		t.tailHdr = append(t.tailHdr, ": "...)
		t.tailHdr = append(t.tailHdr, h.Value...)
		t.tailHdr = foldLast(t.tailHdr, start)
	}
	if err := checkHeader(Header{Name: "List-Id", Value: t.listID}); err != nil {
		return nil, fmt.Errorf("prepare digest %s: %w", d.NewsletterID, err)
	}
	return t, nil
}

// staticHeaders are the extra headers every reader's message carries after
// List-Unsubscribe.
func (t *DigestTemplate) staticHeaders() []Header {
	return append([]Header{
		{Name: "List-Unsubscribe-Post", Value: "List-Unsubscribe=One-Click"},
		{Name: "List-Id", Value: t.listID},
	}, t.extra...)
}

func (c *Composer) checkDigest(d *DigestData) error {
	if !validListLabel(d.NewsletterID) {
		return invalidf("NewsletterID %q must be letters, digits, '-' and '.'", d.NewsletterID)
	}
	if strings.TrimSpace(d.NewsletterName) == "" {
		return invalidf("missing NewsletterName")
	}
	if err := checkText("NewsletterName", d.NewsletterName); err != nil {
		return err
	}
	if d.Date.IsZero() {
		return invalidf("missing Date")
	}
	if len(d.Articles) == 0 {
		return invalidf("no articles")
	}
	if err := checkURL("ArchiveURL", d.ArchiveURL, false); err != nil {
		return err
	}
	for i, a := range d.Articles {
		if strings.TrimSpace(a.Title) == "" {
			return invalidf("article %d: missing Title", i+1)
		}
		if err := checkURL("URL", a.URL, true); err != nil {
			return fmt.Errorf("article %d (%s): %w", i+1, a.URL, err)
		}
		if err := checkURL("ImageURL", a.ImageURL, false); err != nil {
			return fmt.Errorf("article %d (%s): %w", i+1, a.URL, err)
		}
	}
	return nil
}

// digestView is what the digest templates see.
type digestView struct {
	Subject               string
	Preheader             string // the inbox preview line: the articles' titles
	SiteName              string
	SiteURL               string
	PostalAddress         string
	NewsletterName        string
	NewsletterDescription string
	DateText              string // "March 4, 2026"
	DateISO               string // "2026-03-04"
	ArchiveURL            string
	Articles              []digestArticleView
	// Per reader: placeholders while PrepareDigest renders.
	Name           string
	UnsubscribeURL string
	PreferencesURL string
}

type digestArticleView struct {
	Title, URL, Author string
	DateText, DateISO  string // "" without PublishedAt
	ImageURL, ImageAlt string
	Excerpt            string
}

func (c *Composer) digestView(d *DigestData, subject string) *digestView {
	v := &digestView{
		Subject:               subject,
		SiteName:              c.cfg.SiteName,
		SiteURL:               c.cfg.SiteURL,
		PostalAddress:         c.cfg.PostalAddress,
		NewsletterName:        d.NewsletterName,
		NewsletterDescription: d.NewsletterDescription,
		DateText:              d.Date.Format("January 2, 2006"),
		DateISO:               d.Date.Format("2006-01-02"),
		ArchiveURL:            d.ArchiveURL,
	}
	titles := make([]string, 0, len(d.Articles))
	for _, a := range d.Articles {
		av := digestArticleView{
			Title:    a.Title,
			URL:      a.URL,
			Author:   a.Author,
			ImageURL: a.ImageURL,
			ImageAlt: a.ImageAlt,
			Excerpt:  a.Excerpt,
		}
		if av.ImageAlt == "" {
			// Most clients block images until asked: the alt text
			// stands in for the picture.
			av.ImageAlt = a.Title
		}
		if !a.PublishedAt.IsZero() {
			av.DateText = a.PublishedAt.Format("January 2, 2006")
			av.DateISO = a.PublishedAt.Format("2006-01-02")
		}
		v.Articles = append(v.Articles, av)
		titles = append(titles, a.Title)
	}
	v.Preheader = strings.Join(titles, " · ")
	return v
}

// renderDigest runs both digest templates on v and inlines the HTML's CSS.
func (c *Composer) renderDigest(v *digestView) (text, htmlPart string, err error) {
	var tb, hb bytes.Buffer
	if err := c.digest.text.ExecuteTemplate(&tb, "digest", v); err != nil {
		return "", "", fmt.Errorf("digest text%s: %w", c.tset.describe(), err)
	}
	if err := c.digest.html.ExecuteTemplate(&hb, "digest", v); err != nil {
		return "", "", fmt.Errorf("digest html%s: %w", c.tset.describe(), err)
	}
	inlined, err := inlineCSS(hb.String())
	if err != nil {
		return "", "", fmt.Errorf("digest html: inline CSS: %w", err)
	}
	return tb.String(), inlined, nil
}

// inlineCSS moves the rules of the document's <style> blocks into style
// attributes (and width/height/bgcolor attributes where CSS allows, for
// Outlook), keeping the rules that cannot be inlined (media queries,
// pseudo-classes, :root) in a <style> block, marked !important so that they
// win over the inline styles. Classes stay: the media queries use them.
func inlineCSS(doc string) (string, error) {
	p, err := premailer.NewPremailerFromString(doc, premailer.NewOptions())
	if err != nil {
		return "", err
	}
	return p.Transform()
}

// digestNonce derives the placeholder marker from everything the digest
// says, so that no article can contain it: to do so, the article would have
// to contain a hash of itself.
func digestNonce(cfg *ComposerConfig, d *DigestData) string {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, s := range []string{cfg.SiteName, cfg.SiteURL, cfg.PostalAddress, d.NewsletterID,
		d.NewsletterName, d.NewsletterDescription, d.Subject, d.ArchiveURL, d.Date.String()} {
		put(s)
	}
	binary.LittleEndian.PutUint64(n[:], uint64(d.IssueID))
	h.Write(n[:])
	for _, a := range d.Articles {
		for _, s := range []string{a.Title, a.URL, a.Author, a.PublishedAt.String(), a.ImageURL, a.ImageAlt, a.Excerpt} {
			put(s)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:10])
}

// splitDigest cuts the rendered text and HTML at the placeholders into body
// and encodes the static pieces. It checks that each part has the
// unsubscribe link and the postal address (template overrides may drop
// them) and that the HTML uses the per-reader values only where they can be
// spliced.
func (c *Composer) splitDigest(body *digestBody, text, htmlPart, marker string) error {
	var err error
	if body.text, body.textLen, err = splitPieces(text, marker, nil); err != nil {
		return fmt.Errorf("digest text: %w", err)
	}
	if body.html, body.htmlLen, err = splitPieces(htmlPart, marker, checkHTMLSlot); err != nil {
		return fmt.Errorf("digest html: %w", err)
	}
	for _, part := range []struct {
		name    string
		pieces  []digestPiece
		content string
		address string
	}{
		{"text", body.text, text, c.cfg.PostalAddress},
		{"html", body.html, htmlPart, html.EscapeString(c.cfg.PostalAddress)},
	} {
		if !slices.ContainsFunc(part.pieces, func(p digestPiece) bool { return p.slot == slotUnsubscribe }) {
			return fmt.Errorf("digest %s: no unsubscribe link (.UnsubscribeURL)", part.name)
		}
		if !strings.Contains(part.content, part.address) {
			return fmt.Errorf("digest %s: no postal address (.PostalAddress)", part.name)
		}
	}
	for _, ps := range [][]digestPiece{body.text, body.html} {
		for i := range ps {
			body.encLen += len(ps[i].enc)
		}
	}
	return nil
}

// splitPieces cuts s at each marker+digit. check, when set, vets the
// context of each placeholder.
func splitPieces(s, marker string, check func(s string, pos int, sl slot) error) ([]digestPiece, int, error) {
	var ps []digestPiece
	static := 0
	addStatic := func(raw string) {
		if raw != "" {
			ps = append(ps, digestPiece{raw: raw})
			static += len(raw)
		}
	}
	for off := 0; ; {
		i := strings.Index(s[off:], marker)
		if i < 0 {
			addStatic(s[off:])
			break
		}
		pos := off + i
		end := pos + len(marker)
		if end == len(s) || s[end] <= '0' || s[end] >= '0'+byte(numSlots) {
			return nil, 0, fmt.Errorf("a per-reader value was changed by the template at byte %d", pos)
		}
		sl := slot(s[end] - '0')
		if check != nil {
			if err := check(s, pos, sl); err != nil {
				return nil, 0, err
			}
		}
		addStatic(s[off:pos])
		ps = append(ps, digestPiece{slot: sl})
		off = end + 1
	}
	if len(ps) > 0 {
		ps[len(ps)-1].last = true
	}
	for i := range ps {
		if ps[i].slot == slotNone {
			ps[i].enc = appendQPSegment(nil, ps[i].raw, !ps[i].last)
		}
	}
	return ps, static, nil
}

// checkHTMLSlot refuses a per-reader value where html/template would have
// escaped the real value differently from the placeholder: inside a <style>
// or <script> element, a style or event-handler attribute, or inside a URL
// (a name anywhere in a URL attribute, a URL anywhere but at its start).
// Elsewhere, in text and in quoted attribute values, the spliced value only
// needs HTML escaping. The document is premailer's output (x/net/html
// rendering), so '<' and '>' only ever delimit tags, and every attribute
// value is double-quoted.
func checkHTMLSlot(s string, pos int, sl slot) error {
	before := s[:pos]
	for _, el := range []string{"style", "script"} {
		if strings.LastIndex(before, "<"+el) > strings.LastIndex(before, "</"+el) {
			return fmt.Errorf("a per-reader value (.Name, .UnsubscribeURL, .PreferencesURL) inside <%s>", el)
		}
	}
	lt := strings.LastIndexByte(before, '<')
	if lt < 0 || lt < strings.LastIndexByte(before, '>') {
		return nil // text
	}
	q := strings.LastIndex(before[lt:], `="`)
	if q < 0 {
		return fmt.Errorf("a per-reader value in a tag outside an attribute value")
	}
	q += lt
	nameStart := strings.LastIndexAny(before[:q], " \t\n") + 1
	attr := strings.ToLower(before[nameStart:q])
	switch {
	case attr == "style" || strings.HasPrefix(attr, "on"):
		return fmt.Errorf("a per-reader value in a %s attribute", attr)
	case urlAttr(attr) && (sl == slotName || pos != q+2):
		return fmt.Errorf("a per-reader value inside the URL of a %s attribute (only a whole .UnsubscribeURL or .PreferencesURL may stand there)", attr)
	}
	return nil
}

func urlAttr(name string) bool {
	switch name {
	case "href", "src", "action", "formaction", "cite", "background", "poster", "longdesc", "usemap", "srcset", "data", "manifest", "icon", "xmlns":
		return true
	}
	return false
}

// validListLabel reports whether s can lead a List-Id: dot-separated labels
// of ASCII letters, digits and hyphens.
func validListLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// digestListDomain is the domain a digest's List-Id ends with: the host of
// SiteURL without "www.", or else the domain of From.
func digestListDomain(cfg *ComposerConfig) (string, error) {
	domain := cfg.From[strings.LastIndexByte(cfg.From, '@')+1:]
	if cfg.SiteURL != "" {
		u, err := url.Parse(cfg.SiteURL)
		if err != nil {
			return "", fmt.Errorf("SiteURL: %w", err)
		}
		domain = strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
	}
	if !validListLabel(domain) {
		return "", fmt.Errorf("List-Id domain %q (from SiteURL or From) is not a host name", domain)
	}
	return domain, nil
}

// readerValues are one reader's values, checked, in the forms the parts
// need.
type readerValues struct {
	name string // cleaned; "" to leave it out
	text [numSlots]string
	html [numSlots]string
}

// values checks r and date and prepares the per-reader values.
func (t *DigestTemplate) values(r *DigestReader, date time.Time) (readerValues, error) {
	var v readerValues
	if err := checkAddr("To", r.To); err != nil {
		return v, err
	}
	if err := checkMessageID(r.MessageID); err != nil {
		return v, err
	}
	if date.IsZero() {
		return v, invalidf("missing Date")
	}
	if err := checkReaderURL("UnsubscribeURL", r.UnsubscribeURL); err != nil {
		return v, err
	}
	if err := checkReaderURL("PreferencesURL", r.PreferencesURL); err != nil {
		return v, err
	}
	v.name = greetingName(r.Name)
	v.text[slotName], v.html[slotName] = v.name, html.EscapeString(v.name)
	v.text[slotUnsubscribe], v.html[slotUnsubscribe] = r.UnsubscribeURL, html.EscapeString(r.UnsubscribeURL)
	v.text[slotPreferences], v.html[slotPreferences] = r.PreferencesURL, html.EscapeString(r.PreferencesURL)
	return v, nil
}

// checkReaderURL is checkURL (required) for the per-reader URLs, which must
// also hold only the characters html/template leaves as they are in a URL
// attribute (RFC 3986 unreserved and reserved characters, and %XX escapes):
// then the spliced HTML needs no more than HTML escaping, in an href as in
// text. Herald's URLs (base URL, path, token) always do.
//
// It does the work of checkURL without net/url, which would allocate for
// every reader.
func checkReaderURL(field, s string) error {
	if s == "" {
		return invalidf("missing %s", field)
	}
	rest, ok := cutPrefixFold(s, "https://")
	if !ok {
		rest, ok = cutPrefixFold(s, "http://")
	}
	host := rest[:len(rest)-len(strings.TrimLeft(rest, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:[]@"))]
	host = host[strings.LastIndexByte(host, '@')+1:]
	if !ok || host == "" || host[0] == ':' {
		return invalidf("%s must be an absolute http(s) URL", field)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~!#$&*+,/:;=?@[]", c) >= 0:
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
		default:
			return invalidf("%s contains %q: percent-encode it", field, c)
		}
	}
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// body returns the rendering for a reader with the cleaned name.
func (t *DigestTemplate) body(name string) *digestBody {
	if name == "" {
		return &t.anonymous
	}
	return &t.named
}

// AppendTo appends the complete message for r (RFC 5322, CRLF line endings)
// to dst and returns the extended slice: the per-reader header lines written
// directly, the pre-encoded body segments copied, and the reader's values
// quoted-printable encoded between them. The result is what WriteTo writes
// for t.Email(r, date), except that soft line breaks fall elsewhere; both
// decode to the same text and HTML. Errors (dst returned unchanged) wrap
// ErrInvalidEmail: an invalid To or MessageID, a zero date, a missing or
// invalid URL (see checkReaderURL), or a URL or address carrying CR or LF.
func (t *DigestTemplate) AppendTo(dst []byte, r DigestReader, date time.Time) ([]byte, error) {
	v, err := t.values(&r, date)
	if err != nil {
		return dst, fmt.Errorf("digest for %s: %w", r.MessageID, err)
	}
	return t.appendMessage(dst, &r, &v, date), nil
}

// appendMessage writes the message for a checked reader, in the order and
// the encoding of Email.AppendTo.
func (t *DigestTemplate) appendMessage(dst []byte, r *DigestReader, v *readerValues, date time.Time) []byte {
	body := t.body(v.name)
	need := 1024 + len(t.fromHdr) + len(t.midHdr) + len(t.tailHdr) + body.encLen + 8*(len(r.UnsubscribeURL)+len(r.PreferencesURL)+3*len(v.name))
	b := slices.Grow(dst, need)
	b = append(b, t.fromHdr...)
	start := len(b)
	b = append(b, "To: "...)
	b = appendNameAddr(b, v.name, r.To, start)
	b = foldLast(b, start)
	b = append(b, t.midHdr...)
	b = append(b, "Date: "...)
	b = date.AppendFormat(b, dateLayout)
	b = append(b, "\r\nMessage-ID: <"...)
	b = append(b, r.MessageID...)
	b = append(b, ">\r\nMIME-Version: 1.0\r\n"...)
	start = len(b)
	b = append(b, "List-Unsubscribe: <"...)
	b = append(b, r.UnsubscribeURL...)
	b = append(b, '>')
	b = foldLast(b, start)
	b = append(b, t.tailHdr...)

	var boundary [48]byte
	bnd := appendBoundary(boundary[:0], r.MessageID)
	b = append(b, "Content-Type: multipart/alternative;\r\n boundary=\""...)
	b = append(b, bnd...)
	b = append(b, "\"\r\n\r\n"...)
	b = appendDelimiter(b, bnd, false)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"...)
	b = appendPieces(b, body.text, &v.text)
	b = append(b, "\r\n"...)
	b = appendDelimiter(b, bnd, false)
	b = append(b, "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"...)
	b = appendPieces(b, body.html, &v.html)
	b = append(b, "\r\n"...)
	return appendDelimiter(b, bnd, true)
}

func appendPieces(b []byte, ps []digestPiece, vals *[numSlots]string) []byte {
	for i := range ps {
		p := &ps[i]
		if p.slot == slotNone {
			b = append(b, p.enc...)
			continue
		}
		b = appendQPSegment(b, vals[p.slot], !p.last)
	}
	return b
}

func joinPieces(ps []digestPiece, size int, vals *[numSlots]string) string {
	var sb strings.Builder
	n := size
	for i := range ps {
		n += len(vals[ps[i].slot])
	}
	sb.Grow(n)
	for i := range ps {
		if ps[i].slot == slotNone {
			sb.WriteString(ps[i].raw)
		} else {
			sb.WriteString(vals[ps[i].slot])
		}
	}
	return sb.String()
}

// Email returns r's message as an *Email with every field filled (Text and
// HTML decoded, for previews and tests) that encodes through the splice:
// its WriteTo and AppendTo, and so the transports, write what t.AppendTo
// writes, unless a field is changed afterwards. ReturnPath may be set
// freely. When r or date is invalid, the returned Email has no body and
// its Validate (so WriteTo and every transport) fails with the reason,
// which wraps ErrInvalidEmail.
func (t *DigestTemplate) Email(r DigestReader, date time.Time) *Email {
	return t.email(r, date, true)
}

// Message is Email for a transport: the same message, encoded the same
// way, without the decoded Text and HTML (about 15 KB a reader that only
// previews and tests read), so that sending a digest costs a splice and
// nothing more. Text and HTML stay empty; should another field be changed
// afterwards, AppendTo decodes them from the template and encodes the
// message afresh, as it would an Email's.
func (t *DigestTemplate) Message(r DigestReader, date time.Time) *Email {
	return t.email(r, date, false)
}

func (t *DigestTemplate) email(r DigestReader, date time.Time, decoded bool) *Email {
	e := &Email{
		FromName:  t.fromName,
		From:      t.from,
		To:        r.To,
		ReplyTo:   t.replyTo,
		Subject:   t.subject,
		MessageID: r.MessageID,
		Date:      date,
	}
	v, err := t.values(&r, date)
	if err != nil {
		e.invalid = fmt.Errorf("digest for %s: %w", r.MessageID, err)
		return e
	}
	body := t.body(v.name)
	e.ToName = v.name
	if decoded {
		e.Text = joinPieces(body.text, body.textLen, &v.text)
		e.HTML = joinPieces(body.html, body.htmlLen, &v.html)
	}
	e.Headers = append(make([]Header, 0, 3), Header{Name: "List-Unsubscribe", Value: "<" + r.UnsubscribeURL + ">"})
	e.Headers = append(e.Headers, t.staticHeaders()...)
	e.splice = &digestSplice{t: t, r: r, v: v, want: *e, lean: !decoded}
	e.splice.want.Headers = slices.Clone(e.Headers)
	return e
}

// digestSplice ties an Email to the digest it came from.
type digestSplice struct {
	t    *DigestTemplate
	r    DigestReader
	v    readerValues
	want Email // the fields as DigestTemplate.Email set them
	lean bool  // made by Message: the body is only in the template
}

// decoded returns a copy of e with the decoded Text and HTML of the
// reader's digest, for an Email from Message whose fields were changed
// since, which must then be encoded afresh.
func (s *digestSplice) decoded(e *Email) *Email {
	c := *e
	c.splice = nil
	body := s.t.body(s.v.name)
	c.Text = joinPieces(body.text, body.textLen, &s.v.text)
	c.HTML = joinPieces(body.html, body.htmlLen, &s.v.html)
	return &c
}

// matches reports whether e still holds what DigestTemplate.Email put
// there. Text and HTML usually share their bytes with want, which makes the
// comparison of the bodies cheap.
func (s *digestSplice) matches(e *Email) bool {
	w := &s.want
	return e.FromName == w.FromName && e.From == w.From && e.ToName == w.ToName && e.To == w.To &&
		e.ReplyTo == w.ReplyTo && e.Subject == w.Subject && e.MessageID == w.MessageID &&
		e.Date == w.Date && e.Text == w.Text && e.HTML == w.HTML && slices.Equal(e.Headers, w.Headers)
}

func (s *digestSplice) appendTo(dst []byte) []byte {
	return s.t.appendMessage(dst, &s.r, &s.v, s.want.Date)
}
