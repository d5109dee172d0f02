package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
)

// The reader's forms (the preference page, its data forms, the "Changed
// your mind?" button and the data download) are reached through a signed
// token in the address and set no cookie, so there is no session to tie a
// CSRF token to. Instead every page that shows one of these forms puts in
// it a form token: the time it was rendered and an HMAC over that time and
// the address's own token. A POST must bring back a form token made for
// that same address, no older than formTokenMaxAge. A forging site that
// does not hold the reader's link cannot make one; one that holds it can
// already open the page, so the token adds what it can: a form posted from
// elsewhere, replayed long after, or aimed at another reader's link is
// refused. Browsers also say where a POST comes from (Sec-Fetch-Site, or
// Origin), and a post from another site is refused whatever it carries.
//
// The signup form is not guarded this way: news sites post it from their
// own pages, and double opt-in is its guard. Nor is POST /unsubscribe: it
// is the RFC 8058 one-click target, which mail providers post without a
// page, a cookie or a form token.

// fieldFormToken is the hidden field that carries the form token, named as
// the admin pages' CSRF field.
const fieldFormToken = "csrf"

// formTokenMaxAge is how long a rendered reader form may be sent. A reader
// may leave the page open in a tab for a while; past this the form is
// shown again with a fresh token and what they chose, to send once more.
const formTokenMaxAge = 24 * time.Hour

// formTokenSkew is how far in the future a form token's time may be, for
// instances whose clocks differ a little.
const formTokenSkew = 5 * time.Minute

// What a form token is made for: the preference page's forms, keyed by the
// preferences token, or the data download, keyed by the download token.
const (
	formPreferences = "preferences"
	formData        = "data"
)

// Why a reader form was refused.
const (
	formOK        = iota
	formForged    // missing, malformed, or not ours for this address
	formExpired   // ours, but older than formTokenMaxAge
	formCrossSite // the browser says another site posted it
)

// Messages shown above a refused reader form, which comes back with what
// the reader sent and a fresh token.
const (
	errorFormExpired = "This page was open for a long time, so nothing was changed. Check the form below and send it again."
	errorFormForged  = "This form did not come from this page, so nothing was changed. If you sent it, check the form below and send it again."
)

// newFormKey derives the key of the reader forms' tokens from secret
// (Deps.SignupKey), for this purpose only; an empty secret gets a random
// key, good for this process only (an open page then needs a reload after
// a restart).
func newFormKey(secret []byte) ([]byte, error) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("web: random form key: %w", err)
		}
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("herald reader form"))
	return m.Sum(nil), nil
}

// readerFormToken returns a fresh form token for a form of kind posted to
// the address that carries token: "<unix>.<mac>".
func (s *Server) readerFormToken(kind, token string) string {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	return ts + "." + formTokenMAC(s.formKey, kind, token, ts)
}

// formTokenMAC signs (kind, token, ts). Each part is written with its
// length, so that no two different triples share an input.
func formTokenMAC(key []byte, kind, token, ts string) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%d:%s|%d:%s|%s", len(kind), kind, len(token), token, ts)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// checkFormToken reports whether got is a form token of kind for token,
// made at most formTokenMaxAge before now. The MAC is compared in constant
// time.
func checkFormToken(key []byte, kind, token, got string, now time.Time) int {
	return checkFormTokenAge(key, kind, token, got, now, formTokenMaxAge)
}

// checkFormTokenAge is checkFormToken for tokens that live maxAge.
func checkFormTokenAge(key []byte, kind, token, got string, now time.Time, maxAge time.Duration) int {
	ts, mac, ok := strings.Cut(got, ".")
	if !ok || ts == "" || len(ts) > 20 || len(mac) > 64 {
		return formForged
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return formForged
	}
	if !hmac.Equal([]byte(mac), []byte(formTokenMAC(key, kind, token, ts))) {
		return formForged
	}
	age := now.Sub(time.Unix(sec, 0))
	switch {
	case age < -formTokenSkew:
		return formForged // not a time we would have written
	case age > maxAge:
		return formExpired
	}
	return formOK
}

// checkReaderForm checks a reader form's POST: where the browser says it
// comes from, then its form token in f. It answers formOK or why not.
func (s *Server) checkReaderForm(c echo.Context, kind, token string, f url.Values) int {
	if !s.sameSiteReaderForm(c) {
		return formCrossSite
	}
	return checkFormToken(s.formKey, kind, token, f.Get(fieldFormToken), s.now())
}

// sameSiteReaderForm is sameOrigin for the reader's pages, which are sent
// with Referrer-Policy: no-referrer: a browser that sends no
// Sec-Fetch-Site then sends "Origin: null" with their own forms, so that
// value is let through and the form token is the guard.
func (s *Server) sameSiteReaderForm(c echo.Context) bool {
	h := c.Request().Header
	if h.Get("Sec-Fetch-Site") == "" && h.Get("Origin") == "null" {
		return true
	}
	return s.sameOrigin(c)
}

// formRefusal is the message shown for a refused reader form.
func formRefusal(why int) string {
	if why == formExpired {
		return errorFormExpired
	}
	return errorFormForged
}

// readReaderForm reads a reader form's body, URL-encoded or multipart.
func (s *Server) readReaderForm(c echo.Context) (url.Values, error) {
	req := c.Request()
	mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	switch mt {
	case echo.MIMEApplicationForm:
		if err := req.ParseForm(); err != nil {
			return nil, readError(c, herald.Errorf(herald.EBADREQUEST, "The form data could not be read."))
		}
	case echo.MIMEMultipartForm:
		if err := req.ParseMultipartForm(s.cfg.BodyLimit); err != nil {
			return nil, readError(c, herald.Errorf(herald.EBADREQUEST, "The form data could not be read."))
		}
		_ = req.MultipartForm.RemoveAll() // the values are kept; no file is wanted
	default:
		return nil, herald.Errorf(herald.EUNSUPPORTED, "Send the form as application/x-www-form-urlencoded or multipart/form-data.")
	}
	return req.PostForm, nil
}
