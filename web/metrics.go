package web

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Signup results, as SignupObserver.Signup receives them.
const (
	SignupAccepted    = "accepted"     // a signup was taken (or a known address answered alike)
	SignupInvalid     = "invalid"      // the input did not validate (422)
	SignupRateLimited = "rate_limited" // refused by the per-IP limit (429)
	SignupHoneypot    = "honeypot"     // a bot filled the honeypot field
)

// SignupObserver counts signup requests by result (*metrics.Metrics).
type SignupObserver interface {
	// Signup records one request with result, one of the Signup
	// constants. It is called from many requests at once and must not
	// block.
	Signup(result string)
}

// observeSignup tells the SignupObserver, if any, of one result.
func (s *Server) observeSignup(result string) {
	if s.signups != nil {
		s.signups.Signup(result)
	}
}

// handleMetrics serves Deps.Metrics; 404 when there is none.
func (s *Server) handleMetrics(c echo.Context) error {
	if s.metrics == nil {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	s.metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}

// requireMetrics guards /metrics: open to all with Config.MetricsPublic,
// else like the admin API (a read-scoped token is enough, and is what a
// Prometheus scraper should hold).
func (s *Server) requireMetrics(next echo.HandlerFunc) echo.HandlerFunc {
	guarded := s.requireAdmin(next)
	return func(c echo.Context) error {
		if s.cfg.MetricsPublic {
			return next(c)
		}
		return guarded(c)
	}
}
