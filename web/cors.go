package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// corsMaxAge is how long, in seconds, a browser may cache a preflight.
const corsMaxAge = "600"

// checkOrigins validates Config.CORSOrigins: each an exact origin,
// scheme://host[:port], nothing else. A wildcard is refused: the allow-list
// is the point.
func checkOrigins(origins []string) (map[string]bool, error) {
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Contains(o, "*") {
			return nil, fmt.Errorf("web: CORSOrigins: %q is not an origin such as https://news.example.org", o)
		}
		allowed[strings.ToLower(o)] = true
	}
	return allowed, nil
}

// checkFrameAncestors validates Config.FrameAncestors: CSP source
// expressions, which may not carry the characters that end a directive.
func checkFrameAncestors(sources []string) error {
	for _, src := range sources {
		if src == "" || strings.ContainsAny(src, ";,\r\n\t ") || hasControl(src) {
			return fmt.Errorf("web: FrameAncestors: %q is not a CSP source such as 'self' or https://news.example.org", src)
		}
	}
	return nil
}

// corsOrigin returns the request's Origin when it is on the allow-list,
// else "".
func (s *Server) corsOrigin(c echo.Context) string {
	o := c.Request().Header.Get(echo.HeaderOrigin)
	if o == "" || !s.corsOrigins[strings.ToLower(o)] {
		return ""
	}
	return o
}

// allowCORS lets a listed origin read the answer of a JSON signup. Form
// posts from any origin are taken anyway (an embedded signup form is a
// cross-origin form post); CORS only decides whether a script there may
// read the answer. No credentials are ever allowed: signup needs none.
func (s *Server) allowCORS(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Add(echo.HeaderVary, echo.HeaderOrigin)
		if o := s.corsOrigin(c); o != "" {
			h.Set(echo.HeaderAccessControlAllowOrigin, o)
		}
		return next(c)
	}
}

// handleSubscribePreflight answers a browser's CORS preflight for the JSON
// signup: the allowed method and header for a listed origin, 403 for any
// other.
func (s *Server) handleSubscribePreflight(c echo.Context) error {
	o := s.corsOrigin(c)
	if o == "" {
		return c.NoContent(http.StatusForbidden)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderAccessControlAllowOrigin, o)
	h.Set(echo.HeaderAccessControlAllowMethods, http.MethodPost)
	h.Set(echo.HeaderAccessControlAllowHeaders, echo.HeaderContentType)
	h.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
	return c.NoContent(http.StatusNoContent)
}
