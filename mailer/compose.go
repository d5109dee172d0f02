package mailer

import (
	"bytes"
	"errors"
	"fmt"
	htemplate "html/template"
	"io/fs"
	"net/url"
	"strconv"
	"strings"
	ttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kinds of email the Composer writes.
const (
	KindConfirmation = "confirmation"
	KindWelcome      = "welcome"
	// KindDataExport carries the link to a reader's data export.
	KindDataExport = "data_export"
)

// DataExportTTL is how long a data export link works, as the email says.
const DataExportTTL = 7 * 24 * time.Hour

// ComposerConfig is what every email says about its sender.
type ComposerConfig struct {
	SiteName      string // the publication, e.g. "PassBlue"
	SiteURL       string // the publication's website (optional)
	FromName      string // display name of From (optional)
	From          string // bare From address
	ReplyTo       string // bare Reply-To address (optional)
	PostalAddress string // printed in every footer (CAN-SPAM)
	BaseURL       string // Herald's public URL (optional; links arrive whole in Data)
	ListID        string // List-Id identifier, e.g. "news.passblue.example" (optional)
	// TemplatesDir is the mail.templates_dir override directory
	// (optional): a file there named like an embedded email template
	// (digest.html.tmpl, layout.txt.tmpl, ...) replaces it.
	TemplatesDir string
	// ConfirmTTL is how long a confirmation link works, as the email says;
	// default 48 hours.
	ConfirmTTL time.Duration
}

// NewsletterInfo describes one newsletter in an email.
type NewsletterInfo struct {
	ID          string
	Name        string
	Description string
	Frequency   string // how often, in words: "every weekday morning" (optional)
}

// Data is what one email says to one reader. URLs arrive complete (with
// their tokens); UnsubscribeURL and PreferencesURL may be empty where a kind
// allows it.
type Data struct {
	MessageID      string // without angle brackets; stable across retries
	Date           time.Time
	To             string // bare address
	Name           string // the reader's name as given; see Compose
	ConfirmURL     string
	UnsubscribeURL string
	PreferencesURL string
	// DataExportURL is the page that downloads the reader's data
	// (KindDataExport only).
	DataExportURL string
	Newsletters   []NewsletterInfo
}

// kind is one row of the table of emails the Composer knows. A new kind is
// a row here plus email/<name>.txt.tmpl and email/<name>.html.tmpl, each
// defining "content" (and the HTML one "preheader").
type kind struct {
	name    string
	subject func(cfg *ComposerConfig, d *Data) string
	check   func(d *Data) error
}

func kindTable() []kind {
	return []kind{
		{
			name: KindConfirmation,
			subject: func(cfg *ComposerConfig, _ *Data) string {
				return "Please confirm your subscription to " + cfg.SiteName
			},
			check: func(d *Data) error { return checkURL("ConfirmURL", d.ConfirmURL, true) },
		},
		{
			name: KindWelcome,
			subject: func(cfg *ComposerConfig, _ *Data) string {
				return "Welcome to " + cfg.SiteName
			},
			check: func(d *Data) error { return checkURL("UnsubscribeURL", d.UnsubscribeURL, true) },
		},
		{
			name: KindDataExport,
			subject: func(cfg *ComposerConfig, _ *Data) string {
				return "Your data at " + cfg.SiteName
			},
			check: func(d *Data) error {
				if err := checkURL("DataExportURL", d.DataExportURL, true); err != nil {
					return err
				}
				return checkURL("UnsubscribeURL", d.UnsubscribeURL, true)
			},
		},
	}
}

// Composer renders Herald's emails from the embedded templates. It is safe
// for concurrent use.
type Composer struct {
	cfg    ComposerConfig
	ttl    string // ConfirmTTL in words
	listID string // the List-Id header value, "" for none
	kinds  map[string]*composed
	digest digestTemplates
	tset   *templateSet
}

type composed struct {
	kind
	text *ttemplate.Template
	html *htemplate.Template
}

// view is what the templates see.
type view struct {
	Subject        string
	SiteName       string
	SiteURL        string
	PostalAddress  string
	Name           string // safe for the greeting, "" for none
	ConfirmURL     string
	ConfirmTTL     string // "48 hours"
	UnsubscribeURL string
	PreferencesURL string
	DataExportURL  string
	DataExportTTL  string // "7 days"
	Newsletters    []NewsletterInfo
}

// NewComposer parses the email templates under email/ in fsys (usually
// templates.FS) once: for each kind, email/layout.txt.tmpl with
// email/<kind>.txt.tmpl (text/template) and email/layout.html.tmpl with
// email/<kind>.html.tmpl (html/template); and email/digest.txt.tmpl and
// email/digest.html.tmpl on their own (see PrepareDigest). A file in
// cfg.TemplatesDir with the name of one of those replaces it. It fails when
// a template is missing or does not parse (the error names the file,
// override path included, and the line), when cfg.TemplatesDir holds a
// *.tmpl file that replaces nothing, or when cfg lacks SiteName, From or
// PostalAddress.
func NewComposer(cfg ComposerConfig, fsys fs.FS) (*Composer, error) {
	if cfg.SiteName == "" {
		return nil, errors.New("composer: SiteName is required")
	}
	if cfg.PostalAddress == "" {
		return nil, errors.New("composer: PostalAddress is required")
	}
	if err := checkAddr("From", cfg.From); err != nil {
		return nil, fmt.Errorf("composer: %w", err)
	}
	if cfg.ReplyTo != "" {
		if err := checkAddr("Reply-To", cfg.ReplyTo); err != nil {
			return nil, fmt.Errorf("composer: %w", err)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"SiteName", cfg.SiteName}, {"FromName", cfg.FromName}, {"ListID", cfg.ListID},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return nil, fmt.Errorf("composer: %w", err)
		}
	}
	if cfg.SiteURL != "" {
		if err := checkURL("SiteURL", cfg.SiteURL, false); err != nil {
			return nil, fmt.Errorf("composer: %w", err)
		}
	}
	if cfg.ConfirmTTL <= 0 {
		cfg.ConfirmTTL = 48 * time.Hour
	}
	c := &Composer{cfg: cfg, ttl: durationWords(cfg.ConfirmTTL), kinds: map[string]*composed{}}
	if cfg.ListID != "" {
		if strings.ContainsAny(cfg.ListID, " <>") || !isPrintableASCII(cfg.ListID) {
			return nil, fmt.Errorf("composer: ListID %q must be a dotted ASCII identifier", cfg.ListID)
		}
		c.listID = string(appendPhrase([]byte("List-Id: "), cfg.SiteName, 0)[len("List-Id: "):]) + " <" + cfg.ListID + ">"
	}
	ts, err := newTemplateSet(fsys, cfg.TemplatesDir)
	if err != nil {
		return nil, fmt.Errorf("composer: %w", err)
	}
	c.tset = ts
	funcs := ttemplate.FuncMap{"wrap": wrapText}
	for _, k := range kindTable() {
		tt, err := ts.parseText(k.name, funcs, "layout.txt.tmpl", k.name+".txt.tmpl")
		if err != nil {
			return nil, fmt.Errorf("composer: parse %s text: %w", k.name, err)
		}
		ht, err := ts.parseHTML(k.name, "layout.html.tmpl", k.name+".html.tmpl")
		if err != nil {
			return nil, fmt.Errorf("composer: parse %s html: %w", k.name, err)
		}
		c.kinds[k.name] = &composed{kind: k, text: tt, html: ht}
	}
	if c.digest.text, err = ts.parseText("digest", funcs, "digest.txt.tmpl"); err != nil {
		return nil, fmt.Errorf("composer: parse digest text: %w", err)
	}
	if c.digest.html, err = ts.parseHTML("digest", "digest.html.tmpl"); err != nil {
		return nil, fmt.Errorf("composer: parse digest html: %w", err)
	}
	if c.digest.domain, err = digestListDomain(&cfg); err != nil {
		return nil, fmt.Errorf("composer: %w", err)
	}
	return c, nil
}

// Kinds lists the kinds Compose accepts.
func (c *Composer) Kinds() []string {
	var names []string
	for _, k := range kindTable() {
		names = append(names, k.name)
	}
	return names
}

// Compose renders the email of the given kind for d: a text and an HTML
// part, List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 one-click) when
// d.UnsubscribeURL is set (required for every kind but the confirmation),
// List-Id when configured, and the postal address in both footers.
//
// The reader's name is the only text a stranger controls (anyone can sign an
// address up), so it appears only in the greeting and in the To header, and
// only when it cannot carry a link: control and invisible formatting
// characters are removed, and a name that looks like a URL, a domain or an
// address ("://", "www.", "@", "/", "evil.example"), or is longer than 40
// characters, is left out entirely ("Hi there,"). Leaving it out beats
// defacing it (with zero-width joiners, say), because mail clients link bare
// domains too.
//
// Errors wrap ErrInvalidEmail for bad data (a missing or non-HTTP URL, an
// invalid address or Message-ID).
func (c *Composer) Compose(kind string, d Data) (*Email, error) {
	k, ok := c.kinds[kind]
	if !ok {
		return nil, fmt.Errorf("compose: unknown kind %q", kind)
	}
	if err := k.check(&d); err != nil {
		return nil, fmt.Errorf("compose %s: %w", kind, err)
	}
	for _, u := range []struct{ name, v string }{
		{"UnsubscribeURL", d.UnsubscribeURL}, {"PreferencesURL", d.PreferencesURL},
	} {
		if err := checkURL(u.name, u.v, false); err != nil {
			return nil, fmt.Errorf("compose %s: %w", kind, err)
		}
	}
	name := greetingName(d.Name)
	v := &view{
		Subject:        k.subject(&c.cfg, &d),
		SiteName:       c.cfg.SiteName,
		SiteURL:        c.cfg.SiteURL,
		PostalAddress:  c.cfg.PostalAddress,
		Name:           name,
		ConfirmURL:     d.ConfirmURL,
		ConfirmTTL:     c.ttl,
		UnsubscribeURL: d.UnsubscribeURL,
		PreferencesURL: d.PreferencesURL,
		DataExportURL:  d.DataExportURL,
		DataExportTTL:  durationWords(DataExportTTL),
		Newsletters:    d.Newsletters,
	}
	var text, html bytes.Buffer
	if err := k.text.ExecuteTemplate(&text, "layout", v); err != nil {
		return nil, fmt.Errorf("compose %s text%s: %w", kind, c.tset.describe(), err)
	}
	if err := k.html.ExecuteTemplate(&html, "layout", v); err != nil {
		return nil, fmt.Errorf("compose %s html%s: %w", kind, c.tset.describe(), err)
	}
	e := &Email{
		FromName:  c.cfg.FromName,
		From:      c.cfg.From,
		ToName:    name,
		To:        d.To,
		ReplyTo:   c.cfg.ReplyTo,
		Subject:   v.Subject,
		MessageID: d.MessageID,
		Date:      d.Date,
		Text:      text.String(),
		HTML:      html.String(),
	}
	if d.UnsubscribeURL != "" {
		e.Headers = append(e.Headers,
			Header{Name: "List-Unsubscribe", Value: "<" + d.UnsubscribeURL + ">"},
			Header{Name: "List-Unsubscribe-Post", Value: "List-Unsubscribe=One-Click"},
		)
	}
	if c.listID != "" {
		e.Headers = append(e.Headers, Header{Name: "List-Id", Value: c.listID})
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("compose %s: %w", kind, err)
	}
	return e, nil
}

// checkURL accepts an absolute http or https URL of printable ASCII without
// the characters that would end it early in a header or a line of text.
func checkURL(field, s string, required bool) error {
	if s == "" {
		if required {
			return invalidf("missing %s", field)
		}
		return nil
	}
	if !isPrintableASCII(s) || strings.ContainsAny(s, " <>\"") {
		return invalidf("%s must be printable ASCII without spaces, quotes or angle brackets", field)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return invalidf("%s must be an absolute http(s) URL", field)
	}
	return nil
}

// greetingName returns the reader's name cleaned for the greeting, or ""
// when it should be left out (see Compose).
func greetingName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	space := false
	for _, r := range name {
		switch {
		case r == utf8.RuneError:
			continue
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp):
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	s := b.String()
	if s == "" || utf8.RuneCountInString(s) > 40 || looksLikeLink(s) {
		return ""
	}
	return s
}

// looksLikeLink reports whether a mail client might turn s, or part of it,
// into a link: a scheme, "www.", an address, a path, or a dot between a
// letter or digit and two more (a domain such as "evil.example"). Initials
// such as "J.R.R. Tolkien" pass.
func looksLikeLink(s string) bool {
	lower := strings.Map(func(r rune) rune {
		switch r {
		case '\uff0e', '\u3002', '\uff61':
			// Full-width and ideographic stops are treated as dots by
			// some linkifiers.
			return '.'
		}
		return unicode.ToLower(r)
	}, s)
	for _, bad := range []string{"://", "www.", "@", "/", "\\", "mailto:", "\uff20"} {
		if strings.Contains(lower, bad) {
			return true
		}
	}
	rs := []rune(lower)
	for i, r := range rs {
		if r != '.' || i == 0 || i+2 >= len(rs) {
			continue
		}
		if isAlnum(rs[i-1]) && isAlnum(rs[i+1]) && isAlnum(rs[i+2]) {
			return true
		}
	}
	return false
}

func isAlnum(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// durationWords renders d as "48 hours", "7 days" or "30 minutes".
func durationWords(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s"
	}
	switch {
	case d >= 72*time.Hour && d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	default:
		return plural(int64((d+time.Minute-1)/time.Minute), "minute")
	}
}

// wrapText breaks s into lines of at most width characters at spaces,
// prefixing every line with indent (text templates: {{wrap 72 "  " .X}}).
// A word longer than width (a URL) stays whole on its own line.
func wrapText(width int, indent, s string) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		wl := utf8.RuneCountInString(w)
		switch {
		case i == 0:
			b.WriteString(indent)
			n = utf8.RuneCountInString(indent)
		case n+1+wl > width:
			b.WriteString("\n")
			b.WriteString(indent)
			n = utf8.RuneCountInString(indent)
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += wl
	}
	return b.String()
}
