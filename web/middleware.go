package web

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"herald"
)

// Keys of values kept on the echo context for one request.
const (
	ctxRequestID = "herald.request_id"
	ctxBody      = "herald.body"
)

// contentSecurityPolicy allows our own stylesheet and same-origin forms and
// nothing else: no scripts at all, no framing (the buttons on the confirm
// and unsubscribe pages must not be clickjacked).
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// hstsValue tells browsers to use https only, for a year, once they have
// reached Herald over https. Subdomains are left alone: they may be other
// people's sites.
const hstsValue = "max-age=31536000"

// signupFraming returns the CSP and X-Frame-Options of the signup page and
// its answer: framing by ancestors (default 'self'), scripts and requests
// to our own origin only (the proof-of-work widget).
func signupFraming(ancestors []string) (csp, xfo string) {
	if len(ancestors) == 0 {
		ancestors = []string{"'self'"}
	}
	csp = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; " +
		"form-action 'self'; frame-ancestors " + strings.Join(ancestors, " ") + "; base-uri 'none'"
	switch {
	case len(ancestors) == 1 && ancestors[0] == "'none'":
		xfo = "DENY"
	case len(ancestors) == 1 && ancestors[0] == "'self'":
		xfo = "SAMEORIGIN"
	}
	// Otherwise no X-Frame-Options: it cannot name other sites, and
	// browsers follow frame-ancestors.
	return csp, xfo
}

// signupRoute reports whether the request is for the signup page or its
// answer, the pages a news site may frame.
func signupRoute(c echo.Context) bool {
	p := c.Path()
	return p == "/" || p == "/subscribe"
}

// middleware installs the chain every request goes through, outermost first.
// It runs after routing, so the log line can name the route pattern.
func (s *Server) middleware() {
	s.echo.Use(
		s.sanitizeRequestID,
		middleware.RequestIDWithConfig(middleware.RequestIDConfig{
			RequestIDHandler: func(c echo.Context, id string) { c.Set(ctxRequestID, id) },
		}),
		s.logRequests,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			LogErrorFunc: func(_ echo.Context, err error, stack []byte) error {
				// The error handler logs it once, stack included, and
				// shows the visitor a plain 500 page.
				return &panicError{err: err, stack: stack}
			},
		}),
		s.securityHeaders,
		s.limitBody,
	)
}

// panicError is a recovered panic on its way to the error handler.
type panicError struct {
	err   error
	stack []byte
}

func (p *panicError) Error() string { return "panic: " + p.err.Error() }
func (p *panicError) Unwrap() error { return p.err }

// sanitizeRequestID drops an incoming X-Request-Id that is not a short plain
// token, so a client cannot put arbitrary text into our logs; RequestID then
// makes a fresh one.
func (s *Server) sanitizeRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !plainToken(id, 64) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func plainToken(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

// logRequests writes one line per request. It names the route pattern, never
// the path (paths carry tokens), and logs no query string and no address.
// It hands errors to the error handler itself so the status it logs is the
// one the visitor got.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		s.log.LogAttrs(c.Request().Context(), level, "http request",
			slog.String("method", c.Request().Method),
			slog.String("route", s.routeName(c)),
			slog.Int("status", status),
			slog.Duration("duration", time.Since(start)),
			slog.Int64("bytes_out", c.Response().Size),
			slog.String("request_id", requestID(c)),
		)
		return nil
	}
}

// routeName is the matched route pattern, or "unmatched": for an unknown
// path the router's guess is not logged, since the path may hold a token.
func (s *Server) routeName(c echo.Context) string {
	if p := c.Path(); s.routes[p] {
		return p
	}
	return "unmatched"
}

// tokenPath reports whether the path carries a secret token.
func tokenPath(p string) bool {
	return strings.HasPrefix(p, "/confirm/") || strings.HasPrefix(p, "/unsubscribe/") ||
		strings.HasPrefix(p, "/preferences/") || strings.HasPrefix(p, "/data/")
}

// securityHeaders sets the headers every answer carries, error pages
// included, before the handler runs.
func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if signupRoute(c) {
			if s.signupXFO != "" {
				h.Set("X-Frame-Options", s.signupXFO)
			}
			h.Set("Content-Security-Policy", s.signupCSP)
		} else {
			h.Set("X-Frame-Options", "DENY")
			h.Set("Content-Security-Policy", contentSecurityPolicy)
		}
		if s.hsts != "" {
			h.Set("Strict-Transport-Security", s.hsts)
		}
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		p := c.Request().URL.Path
		if tokenPath(p) {
			// The token in the address must not travel to the next site
			// in a Referer header.
			h.Set("Referrer-Policy", "no-referrer")
		} else {
			h.Set("Referrer-Policy", "same-origin")
		}
		if !strings.HasPrefix(p, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// limitBody refuses a body over the route's limit: at once when
// Content-Length says so, otherwise when reading passes it.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		limit := s.bodyLimitOf(c)
		if req.ContentLength > limit {
			return tooLarge(limit)
		}
		if req.Body != nil && req.Body != http.NoBody {
			lb := &limitedBody{rc: req.Body, left: limit, err: tooLarge(limit)}
			req.Body = lb
			c.Set(ctxBody, lb)
		}
		return next(c)
	}
}

// setBodyLimit gives route a body limit of its own instead of
// Config.BodyLimit. limitBody runs after routing, so it knows the route.
func (s *Server) setBodyLimit(r *echo.Route, limit int64) {
	if s.bodyLimits == nil {
		s.bodyLimits = make(map[string]int64)
	}
	s.bodyLimits[r.Method+" "+r.Path] = limit
}

// bodyLimitOf is the largest body the request's route accepts.
func (s *Server) bodyLimitOf(c echo.Context) int64 {
	if n, ok := s.bodyLimits[c.Request().Method+" "+c.Path()]; ok {
		return n
	}
	return s.cfg.BodyLimit
}

func tooLarge(limit int64) error {
	return herald.Errorf(herald.ETOOLARGE, "The request is too large: the limit is %s.", byteSize(limit))
}

func byteSize(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// limitedBody reads at most left bytes, then fails with err and remembers
// that it did, since parsers do not all wrap the errors they meet.
type limitedBody struct {
	rc       io.ReadCloser
	left     int64
	err      error
	exceeded bool
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.exceeded {
		return 0, l.err
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.rc.Read(p)
	if int64(n) > l.left {
		l.exceeded = true
		n = int(l.left)
		l.left = 0
		return n, l.err
	}
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }

// readError turns a failure to read or parse the body into the error to
// answer: 413 when the body passed the limit, else the given one.
func readError(c echo.Context, otherwise error) error {
	if lb, ok := c.Get(ctxBody).(*limitedBody); ok && lb.exceeded {
		return lb.err
	}
	return otherwise
}
