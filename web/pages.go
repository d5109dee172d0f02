package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"sort"

	"github.com/labstack/echo/v4"
)

// Template files in templates/web. Every other *.html there is a page that
// fills the layout's "title" and "content".
const (
	layoutFile     = "layout.html"
	stylesheetFile = "herald.css"

	pageSignup       = "signup.html"
	pageCheckInbox   = "check_inbox.html"
	pageConfirm      = "confirm.html"
	pageSubscribed   = "subscribed.html"
	pageUnsubscribe  = "unsubscribe.html"
	pageUnsubscribed = "unsubscribed.html"
	pageError        = "error.html"
)

// pages holds one parsed template set per page, each the layout plus that
// page, parsed once at start.
type pages struct {
	sets map[string]*template.Template
}

// parsePages parses web/layout.html with each other web/*.html in fsys. An
// error names the file that failed.
func parsePages(fsys fs.FS) (*pages, error) {
	layout, err := fs.ReadFile(fsys, "web/"+layoutFile)
	if err != nil {
		return nil, fmt.Errorf("web: read template %s: %w", layoutFile, err)
	}
	files, err := fs.Glob(fsys, "web/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: list templates: %w", err)
	}
	p := &pages{sets: make(map[string]*template.Template)}
	for _, f := range files {
		name := path.Base(f)
		if name == layoutFile {
			continue
		}
		src, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("web: read template %s: %w", name, err)
		}
		t, err := template.New(layoutFile).Parse(string(layout))
		if err != nil {
			return nil, fmt.Errorf("web: parse template %s: %w", layoutFile, err)
		}
		if _, err := t.New(name).Parse(string(src)); err != nil {
			return nil, fmt.Errorf("web: parse template %s: %w", name, err)
		}
		for _, block := range []string{"layout", "title", "content"} {
			if t.Lookup(block) == nil {
				return nil, fmt.Errorf("web: template %s: no %q defined", name, block)
			}
		}
		p.sets[name] = t
	}
	for _, name := range []string{pageSignup, pageCheckInbox, pageConfirm, pageSubscribed, pageUnsubscribe, pageUnsubscribed, pageError} {
		if p.sets[name] == nil {
			return nil, fmt.Errorf("web: template %s is missing", name)
		}
	}
	return p, nil
}

// names returns the page names, sorted.
func (p *pages) names() []string {
	out := make([]string, 0, len(p.sets))
	for n := range p.sets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// render executes a page into a buffer, then writes it, so a template
// failure becomes a clean 500 rather than half a page.
func (s *Server) render(c echo.Context, status int, page string, data any) error {
	t := s.pages.sets[page]
	if t == nil {
		return fmt.Errorf("render: no page %s", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("render %s: %w", page, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// basePage is what the layout shows on every page.
type basePage struct {
	Title         string
	SiteName      string
	SiteLink      string // the publication's home page, or our signup page
	PrivacyURL    string
	PostalAddress string
	Stylesheet    string
	Home          string // the signup page
	NoIndex       bool   // personal pages ask search engines to stay away
}

func (s *Server) base(title string) basePage {
	home := s.prefix + "/"
	link := s.cfg.SiteURL
	if link == "" {
		link = home
	}
	return basePage{
		Title:         title,
		SiteName:      s.cfg.SiteName,
		SiteLink:      link,
		PrivacyURL:    s.cfg.PrivacyURL,
		PostalAddress: s.cfg.PostalAddress,
		Stylesheet:    s.cssURL,
		Home:          home,
	}
}

// signupPage is the "Don't miss a story" form.
type signupPage struct {
	basePage
	Action         string
	Email          string
	Name           string
	Newsletters    []newsletterChoice
	ConsentText    string
	ConsentVersion string
	Errors         fieldErrors
	// Stamp is the signed time the form was first served (fieldStamp).
	Stamp string
	// Altcha asks for the proof-of-work widget: its script, and the
	// address it fetches a challenge from.
	Altcha          bool
	AltchaScript    string
	AltchaChallenge string
}

// newsletterChoice is one checkbox on the signup form.
type newsletterChoice struct {
	Index       int // for element ids: newsletter ids are not guaranteed to be valid ids
	ID          string
	Name        string
	Description string
	Schedule    string
	Checked     bool
}

// fieldErrors are the messages shown next to the fields they concern.
type fieldErrors struct {
	Email       string
	Name        string
	Newsletters string
	Form        string // not tied to one field
}

// Any reports whether there is an error to show.
func (f fieldErrors) Any() bool {
	return f.Email != "" || f.Name != "" || f.Newsletters != "" || f.Form != ""
}

// First returns the first message, for answers that carry only one.
func (f fieldErrors) First() string {
	for _, m := range []string{f.Email, f.Name, f.Newsletters, f.Form} {
		if m != "" {
			return m
		}
	}
	return ""
}

// checkInboxPage is the answer to every accepted signup; it holds nothing
// about the address, so it is the same for new, pending and active ones.
type checkInboxPage struct {
	basePage
}

// confirmPage shows the button that confirms a subscription.
type confirmPage struct {
	basePage
	Masked      string
	Newsletters []Newsletter
}

// subscribedPage thanks a reader who confirmed.
type subscribedPage struct {
	basePage
	Newsletters []Newsletter
}

// unsubscribePage shows the button that unsubscribes.
type unsubscribePage struct {
	basePage
	Masked  string
	Already bool // nothing left to stop
}

// unsubscribedPage confirms that mail has stopped.
type unsubscribedPage struct {
	basePage
	Masked      string
	Resubscribe *resubscribeOffer // nil: only "Sign up again"
}

// errorPage explains a failure in a sentence and offers one way on.
type errorPage struct {
	basePage
	Status   int
	Message  string
	LinkURL  string
	LinkText string
}

// newslettersOf returns the configured newsletters among ids, in the
// configured order; ids no longer configured are shown by id.
func (s *Server) newslettersOf(ids []string) []Newsletter {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var out []Newsletter
	for _, n := range s.cfg.Newsletters {
		if want[n.ID] {
			out = append(out, n)
			delete(want, n.ID)
		}
	}
	for _, id := range ids {
		if want[id] {
			out = append(out, Newsletter{ID: id, Name: id})
			delete(want, id)
		}
	}
	return out
}
