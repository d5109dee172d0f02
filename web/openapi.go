package web

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDocument is the OpenAPI 3 document of the admin API, written by
// hand beside the handlers; the tests validate the handlers' real answers
// against it, so the two cannot drift apart unnoticed.
//
//go:embed openapi.json
var openAPIDocument string

// handleOpenAPI serves the OpenAPI document. It needs no token: it
// describes the API, it holds no data.
func (s *Server) handleOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, []byte(openAPIDocument))
}
