package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/adminauth"
	"herald/apitokens"
	"herald/templates"
)

// AdminAuth signs operators in to the admin pages and keeps their sessions
// (*adminauth.Service).
type AdminAuth interface {
	// CheckPassword returns nil for the admin password, EUNAUTHORIZED
	// otherwise (and when none is set).
	CheckPassword(ctx context.Context, pw string) error
	// HasPassword reports whether an admin password has been set.
	HasPassword(ctx context.Context) (bool, error)
	// StartSession opens a session and returns its id for the cookie.
	StartSession(ctx context.Context, via string) (string, *adminauth.Session, error)
	// Session returns the live session with that id: EUNAUTHORIZED when
	// there is none or it has expired.
	Session(ctx context.Context, raw string) (*adminauth.Session, error)
	// EndSession deletes the session with that id, if there is one.
	EndSession(ctx context.Context, raw string) error
	// CSRFToken returns the session's synchronizer token.
	CSRFToken(raw string) string
	// CheckCSRF reports whether token is the session's CSRF token.
	CheckCSRF(raw, token string) bool
	// Seal signs payload for purpose, valid for ttl.
	Seal(purpose string, payload []byte, ttl time.Duration) string
	// Open checks a sealed string: EINVALID when forged or malformed,
	// EGONE when expired.
	Open(purpose, sealed string) ([]byte, error)
	// TTL is how long a session lasts.
	TTL() time.Duration
}

// Admin page names, files in templates/web/admin.
const (
	adminLayoutFile    = "layout.html"
	adminStylesheet    = "admin.css"
	adminScript        = "admin.js"
	adminPageLogin     = "login.html"
	adminPageResume    = "resume.html"
	adminPageDashboard = "dashboard.html"
	adminPageNewslets  = "newsletters.html"
	adminPageIssue     = "issue.html"
	adminPageSubs      = "subscribers.html"
	adminPageSub       = "subscriber.html"
	adminPageArticles  = "articles.html"
	adminPageFeeds     = "feeds.html"
	adminPageMail      = "mail.html"
	adminPageMailMsg   = "mail_message.html"
)

// Admin session cookie and form fields.
const (
	adminCookie    = "herald_admin"
	fieldCSRF      = "csrf"
	fieldCarry     = "carried_form"
	fieldNext      = "next"
	fieldPassword  = "password"
	fieldToken     = "token"
	carryPurpose   = "admin-form"
	carryTTL       = 30 * time.Minute
	loginPerMinute = 10
)

// Keys of admin values on the echo context.
const (
	ctxAdminSession = "herald.admin_session"
	ctxAdminCSRF    = "herald.admin_csrf"
)

// The admin pages' content security policies: our own script and
// stylesheet, fetches to ourselves, nothing else. Pages that show an email
// or an issue in a sandboxed srcdoc frame (which inherits the page's
// policy) also allow inline styles and https images, which mail uses.
const (
	adminCSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	adminPreviewCSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' https: data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

// adminUI is the admin pages' parsed templates and assets.
type adminUI struct {
	auth    AdminAuth // nil: the admin pages answer 503
	sets    map[string]*template.Template
	css     []byte
	js      []byte
	cssURL  string
	jsURL   string
	secure  bool       // the cookie is Secure: BaseURL is https
	limiter *ipLimiter // sign-in attempts per client IP
}

// newAdminUI parses the admin templates once. An error names the file.
func newAdminUI(cfg Config, prefix string, auth AdminAuth) (*adminUI, error) {
	fsys := templates.FS
	layout, err := fs.ReadFile(fsys, "web/admin/"+adminLayoutFile)
	if err != nil {
		return nil, fmt.Errorf("web: read admin template %s: %w", adminLayoutFile, err)
	}
	files, err := fs.Glob(fsys, "web/admin/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: list admin templates: %w", err)
	}
	a := &adminUI{auth: auth, sets: map[string]*template.Template{}, limiter: newIPLimiter(loginPerMinute)}
	for _, f := range files {
		name := path.Base(f)
		if name == adminLayoutFile {
			continue
		}
		src, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("web: read admin template %s: %w", name, err)
		}
		t, err := template.New(adminLayoutFile).Funcs(adminFuncs).Parse(string(layout))
		if err != nil {
			return nil, fmt.Errorf("web: parse admin template %s: %w", adminLayoutFile, err)
		}
		if _, err := t.New(name).Parse(string(src)); err != nil {
			return nil, fmt.Errorf("web: parse admin template %s: %w", name, err)
		}
		a.sets[name] = t
	}
	for _, name := range []string{adminPageLogin, adminPageResume, adminPageDashboard, adminPageNewslets, adminPageIssue,
		adminPageSubs, adminPageSub, adminPageArticles, adminPageFeeds, adminPageMail, adminPageMailMsg} {
		if a.sets[name] == nil {
			return nil, fmt.Errorf("web: admin template %s is missing", name)
		}
	}
	if a.css, err = fs.ReadFile(fsys, "web/"+adminStylesheet); err != nil {
		return nil, fmt.Errorf("web: read %s: %w", adminStylesheet, err)
	}
	if a.js, err = fs.ReadFile(fsys, "web/"+adminScript); err != nil {
		return nil, fmt.Errorf("web: read %s: %w", adminScript, err)
	}
	a.cssURL = prefix + "/static/" + adminStylesheet + "?v=" + shortHash(a.css)
	a.jsURL = prefix + "/static/" + adminScript + "?v=" + shortHash(a.js)
	a.secure = strings.HasPrefix(strings.ToLower(cfg.BaseURL), "https:")
	return a, nil
}

// adminFuncs are the few helpers the admin templates use.
var adminFuncs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

// adminBase is what the admin layout shows on every page.
type adminBase struct {
	Title      string
	SiteName   string
	Stylesheet string
	Script     string
	CSRF       string // "": not signed in (the login page)
	Prefix     string
	Nav        []adminNavItem
	Refresh    int // seconds of a meta refresh for readers without scripts; 0: none
}

// adminNavItem is one link of the admin menu.
type adminNavItem struct {
	Label   string
	URL     string
	Current bool
}

// adminFrame fills the layout for a page of section (a nav label).
func (s *Server) adminFrame(c echo.Context, title, section string) adminBase {
	csrf, _ := c.Get(ctxAdminCSRF).(string)
	b := adminBase{
		Title: title, SiteName: s.cfg.SiteName, Stylesheet: s.admin.cssURL, Script: s.admin.jsURL,
		CSRF: csrf, Prefix: s.prefix,
	}
	if csrf == "" {
		return b
	}
	items := []adminNavItem{
		{Label: "Dashboard", URL: "/admin"},
		{Label: "Newsletters", URL: "/admin/newsletters"},
		{Label: "Subscribers", URL: "/admin/subscribers"},
		{Label: "Articles", URL: "/admin/articles"},
		{Label: "Feeds", URL: "/admin/feeds"},
	}
	if s.cfg.OutboxDir != "" {
		items = append(items, adminNavItem{Label: "Mail", URL: "/admin/mail"})
	}
	for i := range items {
		items[i].Current = items[i].Label == section
		items[i].URL = s.prefix + items[i].URL
	}
	b.Nav = items
	return b
}

// renderAdmin executes an admin page into a buffer, then writes it.
func (s *Server) renderAdmin(c echo.Context, status int, page string, data any) error {
	t := s.admin.sets[page]
	if t == nil {
		return fmt.Errorf("render: no admin page %s", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("render admin %s: %w", page, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// adminHeaders sets the admin pages' own policy over the public one: they
// run a script and fetch progress.
func adminHeaders(c echo.Context, csp string) {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Robots-Tag", "noindex, nofollow")
}

// handleAdminAsset serves admin.css and admin.js; their addresses carry a
// hash of their content, so they may be cached for a year.
func (s *Server) handleAdminAsset(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	if strings.HasSuffix(c.Path(), ".js") {
		return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", s.admin.js)
	}
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", s.admin.css)
}

// sameOrigin refuses a form posted from another site: browsers send
// Sec-Fetch-Site, or at least Origin, with every POST. A request with
// neither (a script, a test) is let through; the CSRF token still guards
// it.
func (s *Server) sameOrigin(c echo.Context) bool {
	h := c.Request().Header
	if site := h.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := h.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if u.Host == c.Request().Host {
		return true
	}
	if b, err := url.Parse(s.cfg.BaseURL); err == nil && b.Host != "" && strings.EqualFold(b.Host, u.Host) && b.Scheme == u.Scheme {
		return true
	}
	return false
}

// requireSession lets a request through with a live admin session. Without
// one, a page is redirected to the login page, which comes back to it; a
// form post is answered with the login page carrying the form, so that
// nothing typed is lost. A POST must carry the session's CSRF token.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.admin.auth == nil {
			return notConfigured("admin pages")
		}
		adminHeaders(c, adminCSP)
		req := c.Request()
		post := !readOnly(req.Method)
		if post && !s.sameOrigin(c) {
			return herald.Errorf(herald.EFORBIDDEN, "This form did not come from Herald's admin pages.")
		}
		raw := ""
		if ck, err := req.Cookie(adminCookie); err == nil {
			raw = ck.Value
		}
		sess, err := s.admin.auth.Session(req.Context(), raw)
		if err == nil {
			err = s.checkSessionVia(c, raw, sess)
		}
		if herald.IsCode(err, herald.EUNAUTHORIZED) {
			return s.signInFirst(c, post)
		} else if err != nil {
			return err
		}
		if post && !s.admin.auth.CheckCSRF(raw, req.PostFormValue(fieldCSRF)) {
			return herald.Errorf(herald.EFORBIDDEN, "This form has expired or did not come from Herald's admin pages: reload the page and try again.")
		}
		c.Set(ctxAdminSession, sess)
		c.Set(ctxAdminCSRF, s.admin.auth.CSRFToken(raw))
		return next(c)
	}
}

// checkSessionVia returns EUNAUTHORIZED, and ends the session, when what
// opened it no longer would: a stored token that has since been revoked or
// deleted, or the bootstrap admin.token after it was removed from the
// configuration. Revoking a token thus closes its admin sessions on the
// next request, in every instance, instead of when they expire.
func (s *Server) checkSessionVia(c echo.Context, raw string, sess *adminauth.Session) error {
	ctx := c.Request().Context()
	var err error
	switch {
	case sess.Via == "token":
		if s.cfg.AdminToken == "" {
			err = herald.Errorf(herald.EUNAUTHORIZED, "The token this session was opened with is no longer configured.")
		}
	case strings.HasPrefix(sess.Via, "token:"):
		id, perr := strconv.ParseInt(strings.TrimPrefix(sess.Via, "token:"), 10, 64)
		switch {
		case perr != nil || s.tokens == nil:
			err = herald.Errorf(herald.EUNAUTHORIZED, "The token this session was opened with cannot be checked.")
		default:
			err = s.tokens.Live(ctx, id)
		}
	}
	if herald.IsCode(err, herald.EUNAUTHORIZED) {
		s.log.InfoContext(ctx, "admin session ended: its token is no longer valid", "via", sess.Via, "request_id", requestID(c))
		if derr := s.admin.auth.EndSession(ctx, raw); derr != nil {
			return derr
		}
		c.SetCookie(s.sessionCookie("", -1))
	}
	return err
}

// signInFirst answers a request that has no live session.
func (s *Server) signInFirst(c echo.Context, post bool) error {
	req := c.Request()
	if strings.HasSuffix(c.Path(), "/progress") {
		return herald.Errorf(herald.EUNAUTHORIZED, "Your session has ended: please sign in again.")
	}
	if !post {
		target := s.prefix + "/admin/login"
		if next := req.URL.RequestURI(); next != s.prefix+"/admin" {
			target += "?" + url.Values{fieldNext: {next}}.Encode()
		}
		return c.Redirect(http.StatusSeeOther, target)
	}
	// The form is kept, signed, in the login page: after signing in the
	// operator sees it again and sends it with one press.
	if err := req.ParseForm(); err != nil {
		return readError(c, herald.Errorf(herald.EBADREQUEST, "The form could not be read."))
	}
	cf := carriedForm{Action: req.URL.Path}
	keys := make([]string, 0, len(req.PostForm))
	for k := range req.PostForm {
		if k != fieldCSRF {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range req.PostForm[k] {
			cf.Fields = append(cf.Fields, formField{Name: k, Value: v})
		}
	}
	payload, err := json.Marshal(cf)
	if err != nil {
		return fmt.Errorf("carry form: %w", err)
	}
	p := s.loginPage(c, adminReturnPath(s.prefix, req.URL.Path))
	p.Carry = s.admin.auth.Seal(carryPurpose, payload, carryTTL)
	p.Notice = "Your session ended before this was saved. Sign in again: what you entered is kept, and you can send it once you are in."
	return s.renderAdmin(c, http.StatusUnauthorized, adminPageLogin, p)
}

// carriedForm is a form posted after the session ended, kept across the
// login in a sealed hidden field.
type carriedForm struct {
	Action string      `json:"action"`
	Fields []formField `json:"fields"`
}

// formField is one submitted value.
type formField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// adminReturnPath is where the operator goes after signing in from a
// form: the page the form was on, when that is known.
func adminReturnPath(prefix, action string) string {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(action, prefix), "/"), "/")
	switch {
	case len(parts) >= 3 && (parts[1] == "subscribers" || parts[1] == "issues"):
		return prefix + "/admin/" + parts[1] + "/" + parts[2]
	case len(parts) >= 2 && parts[1] == "newsletters":
		return prefix + "/admin/newsletters"
	}
	return prefix + "/admin"
}

// loginPage is the sign-in form.
type loginPage struct {
	adminBase
	Next        string
	Carry       string // a sealed carriedForm, or ""
	Error       string
	Notice      string
	HasPassword bool
	TokenOpen   bool   // the token section starts open
	LoginToken  string // the form token of the sign-in cookie (logintoken.go)
}

// loginPage fills the sign-in form, and sets the sign-in cookie its form
// token is made for.
func (s *Server) loginPage(c echo.Context, next string) loginPage {
	p := loginPage{adminBase: s.adminFrame(c, "Sign in", ""), Next: next}
	p.CSRF = "" // the login page never shows the menu
	p.LoginToken = s.loginFormToken(c)
	if ok, err := s.admin.auth.HasPassword(c.Request().Context()); err == nil {
		p.HasPassword = ok
	}
	p.TokenOpen = !p.HasPassword
	return p
}

// safeNext keeps a post-login destination inside the admin pages.
func (s *Server) safeNext(next string) string {
	home := s.prefix + "/admin"
	if next == "" || !strings.HasPrefix(next, home) || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\") || hasControl(next) || strings.HasPrefix(next, home+"/login") {
		return home
	}
	// What goes into the Location header must be a URL a browser reads
	// as this site's path (FuzzAdminLogin found a control byte let
	// through before hasControl was asked).
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return home
	}
	rest := next[len(home):]
	if rest != "" && rest[0] != '/' && rest[0] != '?' {
		return home
	}
	return next
}

// handleAdminLoginPage shows the sign-in form; a live session goes
// straight on.
func (s *Server) handleAdminLoginPage(c echo.Context) error {
	if s.admin.auth == nil {
		return notConfigured("admin pages")
	}
	adminHeaders(c, adminCSP)
	next := s.safeNext(c.QueryParam(fieldNext))
	if ck, err := c.Cookie(adminCookie); err == nil {
		if _, err := s.admin.auth.Session(c.Request().Context(), ck.Value); err == nil {
			return c.Redirect(http.StatusSeeOther, next)
		}
	}
	return s.renderAdmin(c, http.StatusOK, adminPageLogin, s.loginPage(c, next))
}

// handleAdminLogin signs in with the admin password or a write-scoped API
// token, starts a session and goes on: to the page asked for, or, when
// the form carries one, to the form the operator was sending when the
// last session ended.
func (s *Server) handleAdminLogin(c echo.Context) error {
	if s.admin.auth == nil {
		return notConfigured("admin pages")
	}
	adminHeaders(c, adminCSP)
	if !s.sameOrigin(c) {
		return herald.Errorf(herald.EFORBIDDEN, "This form did not come from Herald's admin pages.")
	}
	ctx := c.Request().Context()
	next := s.safeNext(c.FormValue(fieldNext))
	carry := c.FormValue(fieldCarry)
	retry := func(status int, msg string) error {
		p := s.loginPage(c, next)
		p.Carry, p.Error = carry, msg
		p.TokenOpen = p.TokenOpen || c.FormValue(fieldToken) != ""
		return s.renderAdmin(c, status, adminPageLogin, p)
	}
	// Checked before the attempt limit, so that forged posts do not use
	// up the operator's attempts.
	if why := s.checkLoginToken(c); why != formOK {
		s.log.InfoContext(ctx, "admin sign-in form refused: no valid form token", "expired", why == formExpired, "request_id", requestID(c))
		return retry(http.StatusForbidden, loginRefusal(why))
	}
	if ok, wait := s.admin.limiter.allow(c.RealIP(), s.now()); !ok {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
		return retry(http.StatusTooManyRequests, "Too many attempts. Please wait a minute and try again.")
	}
	var via string
	if tok := strings.TrimSpace(c.FormValue(fieldToken)); tok != "" {
		v, err := s.checkAdminToken(ctx, tok)
		switch {
		case herald.IsCode(err, herald.EUNAUTHORIZED):
			return retry(http.StatusUnauthorized, "That token is not valid.")
		case herald.IsCode(err, herald.EFORBIDDEN):
			return retry(http.StatusForbidden, herald.ErrorMessage(err))
		case err != nil:
			return err
		}
		via = v
	} else {
		pw := c.FormValue(fieldPassword)
		if pw == "" {
			return retry(http.StatusUnprocessableEntity, "Enter the admin password, or an API token.")
		}
		err := s.admin.auth.CheckPassword(ctx, pw)
		if herald.IsCode(err, herald.EUNAUTHORIZED) {
			return retry(http.StatusUnauthorized, "That password is not right.")
		} else if err != nil {
			return err
		}
		via = "password"
	}
	raw, _, err := s.admin.auth.StartSession(ctx, via)
	if err != nil {
		return err
	}
	c.SetCookie(s.sessionCookie(raw, int(s.admin.auth.TTL().Seconds())))
	s.log.InfoContext(ctx, "admin signed in", "via", via, "request_id", requestID(c))
	c.Set(ctxAdminCSRF, s.admin.auth.CSRFToken(raw))
	if carry != "" {
		if p, ok := s.resumePage(c, carry); ok {
			return s.renderAdmin(c, http.StatusOK, adminPageResume, p)
		}
	}
	return c.Redirect(http.StatusSeeOther, next)
}

// sessionCookie is the admin session cookie; maxAge < 0 deletes it.
func (s *Server) sessionCookie(raw string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: adminCookie, Value: raw, Path: s.prefix + "/admin", MaxAge: maxAge,
		HttpOnly: true, Secure: s.admin.secure, SameSite: http.SameSiteStrictMode,
	}
}

// checkAdminToken returns how a token signs in: the bootstrap admin.token,
// or a stored token of write scope. EUNAUTHORIZED for any other token,
// EFORBIDDEN for a read token.
func (s *Server) checkAdminToken(ctx context.Context, raw string) (string, error) {
	if s.cfg.AdminToken != "" {
		got, want := sha256.Sum256([]byte(raw)), sha256.Sum256([]byte(s.cfg.AdminToken))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return "token", nil
		}
	}
	if s.tokens == nil {
		return "", herald.Errorf(herald.EUNAUTHORIZED, "That token is not valid.")
	}
	t, err := s.tokens.Authenticate(ctx, raw)
	if err != nil {
		return "", err
	}
	if t.Scope != apitokens.ScopeWrite {
		return "", herald.Errorf(herald.EFORBIDDEN, "A read token cannot sign in to the admin pages: use a write token or the password.")
	}
	return "token:" + strconv.FormatInt(t.ID, 10), nil
}

// resumePage is the form the operator was sending when the session ended,
// to review and send again.
type resumePage struct {
	adminBase
	Action  string
	Fields  []formField
	Discard string
}

// resumePage opens a carried form; ok is false when it is forged, expired
// or aims outside the admin pages.
func (s *Server) resumePage(c echo.Context, sealed string) (resumePage, bool) {
	payload, err := s.admin.auth.Open(carryPurpose, sealed)
	if err != nil {
		return resumePage{}, false
	}
	var cf carriedForm
	if err := json.Unmarshal(payload, &cf); err != nil {
		return resumePage{}, false
	}
	if !strings.HasPrefix(cf.Action, s.prefix+"/admin/") || strings.HasPrefix(cf.Action, s.prefix+"/admin/login") ||
		strings.HasPrefix(cf.Action, s.prefix+"/admin/logout") || strings.Contains(cf.Action, "..") {
		return resumePage{}, false
	}
	p := resumePage{adminBase: s.adminFrame(c, "Send your change again", ""), Action: cf.Action, Fields: cf.Fields,
		Discard: adminReturnPath(s.prefix, cf.Action)}
	return p, true
}

// handleAdminLogout ends the session and deletes the cookie.
func (s *Server) handleAdminLogout(c echo.Context) error {
	if ck, err := c.Cookie(adminCookie); err == nil {
		if err := s.admin.auth.EndSession(c.Request().Context(), ck.Value); err != nil {
			return err
		}
	}
	c.SetCookie(s.sessionCookie("", -1))
	return c.Redirect(http.StatusSeeOther, s.prefix+"/admin/login")
}
