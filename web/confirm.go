package web

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// handleConfirmPage shows the button that confirms. It changes nothing: mail
// scanners open every link in a message, and must not subscribe anyone.
func (s *Server) handleConfirmPage(c echo.Context) error {
	sub, err := s.subs.CheckConfirmToken(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	p := confirmPage{
		basePage:    s.base("Confirm your subscription"),
		Masked:      maskEmail(sub.Email),
		Newsletters: s.newslettersOf(sub.Newsletters),
	}
	p.NoIndex = true
	return s.render(c, http.StatusOK, pageConfirm, p)
}

// handleConfirm confirms the subscription the token belongs to; the welcome
// email is queued by the service and sent at once.
func (s *Server) handleConfirm(c echo.Context) error {
	sub, err := s.subs.Confirm(c.Request().Context(), c.Param("token"), c.RealIP())
	if err != nil {
		return err
	}
	s.callWake()
	p := subscribedPage{
		basePage:    s.base("You're subscribed"),
		Newsletters: s.newslettersOf(sub.Newsletters),
	}
	p.NoIndex = true
	return s.render(c, http.StatusOK, pageSubscribed, p)
}
