package web

import (
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"herald/subscribers"
)

// handleUnsubscribePage shows the button that unsubscribes; opening the link
// alone never does.
func (s *Server) handleUnsubscribePage(c echo.Context) error {
	sub, err := s.subs.CheckUnsubscribeToken(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	p := unsubscribePage{
		basePage: s.base("Unsubscribe"),
		Masked:   maskEmail(sub.Email),
		Already:  sub.Status != subscribers.StatusActive && sub.Status != subscribers.StatusPending,
	}
	p.NoIndex = true
	return s.render(c, http.StatusOK, pageUnsubscribe, p)
}

// handleUnsubscribe unsubscribes. It is also the RFC 8058 one-click target:
// a mail provider POSTs "List-Unsubscribe=One-Click" (form or multipart)
// with no cookies and expects a 200, never a redirect. Our own button posts
// an empty body. The token is the whole authority, so an unreadable body
// does not stand in the way.
func (s *Server) handleUnsubscribe(c echo.Context) error {
	source := "page"
	if s.oneClick(c) {
		source = "one-click"
	}
	if lb, ok := c.Get(ctxBody).(*limitedBody); ok && lb.exceeded {
		return lb.err
	}
	sub, err := s.subs.Unsubscribe(c.Request().Context(), c.Param("token"), source)
	if err != nil {
		return err
	}
	p := unsubscribedPage{basePage: s.base("You have been unsubscribed"), Masked: maskEmail(sub.Email), Resubscribe: s.resubscribeOffer(sub)}
	p.NoIndex = true
	return s.render(c, http.StatusOK, pageUnsubscribed, p)
}

// oneClick reports whether the body is the RFC 8058 one-click request.
func (s *Server) oneClick(c echo.Context) bool {
	req := c.Request()
	mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	switch mt {
	case echo.MIMEApplicationForm:
		if req.ParseForm() != nil {
			return false
		}
	case echo.MIMEMultipartForm:
		if req.ParseMultipartForm(s.cfg.BodyLimit) != nil {
			return false
		}
		defer func() { _ = req.MultipartForm.RemoveAll() }()
	default:
		return false
	}
	return req.PostForm.Get("List-Unsubscribe") == "One-Click"
}

// maskEmail shows enough of an address for its owner to recognise it and
// little to anyone else: j•••@example.org.
func maskEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "•••"
	}
	local, domain := addr[:at], addr[at+1:]
	first, size := utf8.DecodeRuneInString(local)
	if size == 0 || first == utf8.RuneError {
		return "•••@" + domain
	}
	return string(first) + "•••@" + domain
}
