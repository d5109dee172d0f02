package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/apitokens"
)

// Tokens checks the admin API's stored tokens (*apitokens.Service).
type Tokens interface {
	// Authenticate returns the live token matching raw: EUNAUTHORIZED when
	// there is none or it was revoked.
	Authenticate(ctx context.Context, raw string) (*apitokens.Token, error)
	// Live returns nil when the token with that id exists and is not
	// revoked, EUNAUTHORIZED otherwise.
	Live(ctx context.Context, id int64) error
}

// ctxToken holds the *apitokens.Token of an API request authenticated with
// a stored token (absent for the bootstrap admin.token).
const ctxToken = "herald.api_token"

// authenticate returns the scope the request's bearer token grants: write
// for the bootstrap Config.AdminToken (compared in constant time), the
// stored token's own scope otherwise. EUNAUTHORIZED when the header is
// missing, malformed, unknown or revoked.
func (s *Server) authenticate(c echo.Context) (apitokens.Scope, error) {
	denied := herald.Errorf(herald.EUNAUTHORIZED, "A valid admin token is required: send Authorization: Bearer TOKEN.")
	scheme, token, _ := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", denied
	}
	if s.cfg.AdminToken != "" {
		// Hashing first makes the comparison's time independent of the
		// lengths too.
		got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(s.cfg.AdminToken))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return apitokens.ScopeWrite, nil
		}
	}
	if s.tokens == nil {
		return "", denied
	}
	// A stored token is found by its SHA-256: no secret is compared byte
	// by byte, so the look-up's time reveals nothing.
	t, err := s.tokens.Authenticate(c.Request().Context(), token)
	if err != nil {
		return "", err
	}
	c.Set(ctxToken, t)
	return t.Scope, nil
}

// readOnly reports whether a method only reads.
func readOnly(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

// requireToken lets a request through with a valid admin token whose scope
// allows its method: a read token may only GET.
func (s *Server) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		scope, err := s.authenticate(c)
		if herald.IsCode(err, herald.EUNAUTHORIZED) {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, "Bearer")
			return err
		} else if err != nil {
			return err
		}
		if scope != apitokens.ScopeWrite && !readOnly(c.Request().Method) {
			return herald.Errorf(herald.EFORBIDDEN, "This token may only read (GET): make a write token with herald tokens create NAME --scope write.")
		}
		return next(c)
	}
}
