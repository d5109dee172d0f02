package web

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// handleStylesheet serves the one stylesheet. Its address carries a hash of
// its content, so it may be cached for a year.
func (s *Server) handleStylesheet(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", s.css)
}
