package web

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// The admin sign-in form has no session to tie a CSRF token to, and a
// forged sign-in (login CSRF: another site posts its own credentials so
// that the operator's browser works in a session the forger opened) needs
// none. So the sign-in page sets a short-lived cookie holding a random
// nonce and puts in its form a form token (formtoken.go) made for that
// nonce: the time and an HMAC over it and the nonce. A POST must bring the
// cookie and a token for its nonce, no older than loginTokenMaxAge. Another
// site can neither read the cookie nor, from its own origin, set it (the
// __Host- prefix on https), so it cannot make a token that matches. The
// browser's Sec-Fetch-Site or Origin is checked first, as before.

// formLogin is what a sign-in form token is made for.
const formLogin = "admin-login"

// loginTokenMaxAge is how long a sign-in page may be sent, and how long
// its cookie lives.
const loginTokenMaxAge = 2 * time.Hour

// loginNonceBytes is the size of the sign-in cookie's random nonce.
const loginNonceBytes = 16

// Messages shown above a refused sign-in form, which comes back with a
// fresh token.
const (
	errorLoginForged  = "This sign-in form did not come from this page, or your browser did not keep its cookie, so nothing was checked. Sign in again below."
	errorLoginExpired = "This sign-in page was open for a long time, so nothing was checked. Sign in again below."
)

// loginCookieName is the sign-in cookie's name: __Host- prefixed when the
// site is on https, so that no subdomain and no plain-http page can set
// it; plain on http, where browsers refuse the prefix.
func (s *Server) loginCookieName() string {
	if s.admin.secure {
		return "__Host-herald_login"
	}
	return "herald_login"
}

// loginCookie is the sign-in cookie holding nonce. A __Host- cookie must
// have the path /; the plain one is sent to the sign-in form only.
func (s *Server) loginCookie(nonce string) *http.Cookie {
	p := s.prefix + "/admin/login"
	if s.admin.secure {
		p = "/"
	}
	return &http.Cookie{
		Name: s.loginCookieName(), Value: nonce, Path: p, MaxAge: int(loginTokenMaxAge.Seconds()),
		HttpOnly: true, Secure: s.admin.secure, SameSite: http.SameSiteStrictMode,
	}
}

// loginNonceOf returns the nonce of the sign-in cookie c carries, or "".
func (s *Server) loginNonceOf(c echo.Context) string {
	ck, err := c.Cookie(s.loginCookieName())
	if err != nil {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(b) != loginNonceBytes {
		return ""
	}
	return ck.Value
}

// loginFormToken returns the form token of a sign-in form for nonce, and
// (re)sets the sign-in cookie: the one the request carries, so that two
// open sign-in pages both work, else a new one.
func (s *Server) loginFormToken(c echo.Context) string {
	nonce := s.loginNonceOf(c)
	if nonce == "" {
		b := make([]byte, loginNonceBytes)
		rand.Read(b) // never fails (crypto/rand)
		nonce = base64.RawURLEncoding.EncodeToString(b)
	}
	c.SetCookie(s.loginCookie(nonce))
	return s.readerFormToken(formLogin, nonce)
}

// checkLoginToken checks a sign-in POST's form token against its cookie:
// formOK, formForged (no cookie, no token, or not a token for this
// cookie) or formExpired.
func (s *Server) checkLoginToken(c echo.Context) int {
	nonce := s.loginNonceOf(c)
	if nonce == "" {
		return formForged
	}
	return checkFormTokenAge(s.formKey, formLogin, nonce, c.FormValue(fieldCSRF), s.now(), loginTokenMaxAge)
}

// loginRefusal is the message shown for a refused sign-in form.
func loginRefusal(why int) string {
	if why == formExpired {
		return errorLoginExpired
	}
	return errorLoginForged
}
