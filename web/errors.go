package web

import (
	"context"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"herald"
)

// apiError is the JSON shape of every error under /api/.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// statusClientClosed is logged for requests whose client disconnected.
const statusClientClosed = 499

// internalMessage is what a visitor reads when the fault is ours.
const internalMessage = "Something went wrong on our side. Please try again in a moment."

// handleError is the one HTTPErrorHandler: it maps an error to a status and
// a sentence a visitor may read, logs the detail of server faults with the
// request id, and answers JSON under /api/ (and to JSON requests), an HTML
// page elsewhere.
func (s *Server) handleError(err error, c echo.Context) {
	// A visitor who hung up before the answer is not a server fault: note
	// it quietly and answer nothing (nobody is there to read it). The status
	// is nginx's 499 so the request log tells it from a 500.
	if c.Request().Context().Err() != nil && errors.Is(err, context.Canceled) {
		s.log.LogAttrs(c.Request().Context(), slog.LevelDebug, "client went away",
			slog.String("route", s.routeName(c)), slog.String("request_id", requestID(c)))
		c.Response().Status = statusClientClosed
		return
	}
	status, code, message := classify(err)
	if status >= 500 {
		attrs := []slog.Attr{
			slog.String("error", err.Error()),
			slog.String("method", c.Request().Method),
			slog.String("route", s.routeName(c)),
			slog.String("request_id", requestID(c)),
		}
		var p *panicError
		if errors.As(err, &p) {
			attrs = append(attrs, slog.String("stack", string(p.stack)))
		}
		s.log.LogAttrs(c.Request().Context(), slog.LevelError, "request failed", attrs...)
	}
	if c.Response().Committed {
		return
	}
	if status == http.StatusServiceUnavailable && c.Response().Header().Get("Retry-After") == "" {
		c.Response().Header().Set("Retry-After", busyRetryAfter)
	}
	var werr error
	switch {
	case c.Request().Method == http.MethodHead:
		werr = c.NoContent(status)
	case wantsJSON(c):
		werr = c.JSON(status, apiError{Error: apiErrorBody{Code: code, Message: message}})
	default:
		werr = s.render(c, status, pageError, s.errorPage(c, status, message))
	}
	if werr != nil {
		s.log.LogAttrs(c.Request().Context(), slog.LevelError, "write error response",
			slog.String("error", werr.Error()), slog.String("request_id", requestID(c)))
		if !c.Response().Committed {
			_ = c.String(status, message)
		}
	}
}

// classify returns the status, code and visitor-safe message for err.
func classify(err error) (status int, code, message string) {
	var he *herald.Error
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status = statusOf(he.Code)
		if status == http.StatusInternalServerError {
			return status, herald.EINTERNAL, internalMessage
		}
		return status, he.Code, he.Message
	case errors.As(err, &ee):
		return httpErrorDetail(ee.Code)
	case errors.Is(err, context.DeadlineExceeded):
		// The work ran out of its time (the store's queue under a
		// flood of requests, a slow database): the server is overloaded,
		// which the client may retry, not broken.
		return http.StatusServiceUnavailable, herald.EUNAVAILABLE, busyMessage
	}
	return http.StatusInternalServerError, herald.EINTERNAL, internalMessage
}

// busyMessage answers a request that ran out of time.
const busyMessage = "We are very busy just now. Please try again in a minute."

// busyRetryAfter is the Retry-After, in seconds, of a 503.
const busyRetryAfter = "30"

// statusOf maps a herald error code to an HTTP status.
func statusOf(code string) int {
	switch code {
	case herald.EINVALID:
		return http.StatusUnprocessableEntity
	case herald.EBADREQUEST:
		return http.StatusBadRequest
	case herald.ENOTFOUND:
		return http.StatusNotFound
	case herald.EGONE:
		return http.StatusGone
	case herald.ECONFLICT:
		return http.StatusConflict
	case herald.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case herald.EFORBIDDEN:
		return http.StatusForbidden
	case herald.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case herald.EUNSUPPORTED:
		return http.StatusUnsupportedMediaType
	case herald.ERATELIMIT:
		return http.StatusTooManyRequests
	case herald.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// httpErrorDetail gives the errors echo itself raises (unknown route, wrong
// method, ...) a code and our own sentence; echo's messages are not meant
// for readers.
func httpErrorDetail(status int) (int, string, string) {
	switch status {
	case http.StatusNotFound:
		return status, herald.ENOTFOUND, "We could not find that page."
	case http.StatusMethodNotAllowed:
		return status, "method_not_allowed", "That page cannot be used this way."
	case http.StatusRequestEntityTooLarge:
		return status, herald.ETOOLARGE, "The request is too large."
	case http.StatusUnsupportedMediaType:
		return status, herald.EUNSUPPORTED, "The request is in a format we do not accept."
	case http.StatusUnauthorized:
		return status, herald.EUNAUTHORIZED, "A valid token is required."
	case http.StatusForbidden:
		return status, herald.EFORBIDDEN, "You are not allowed to do that."
	case http.StatusTooManyRequests:
		return status, herald.ERATELIMIT, "Too many requests. Please wait a minute and try again."
	case http.StatusServiceUnavailable:
		return status, herald.EUNAVAILABLE, "The service is unavailable. Please try again in a moment."
	}
	if status >= 400 && status < 500 {
		return status, herald.EBADREQUEST, "The request could not be understood."
	}
	return http.StatusInternalServerError, herald.EINTERNAL, internalMessage
}

// wantsJSON reports whether the error should be answered in JSON: under the
// API, and to a request whose body is JSON.
func wantsJSON(c echo.Context) bool {
	p := c.Request().URL.Path
	if p == "/api" || strings.HasPrefix(p, "/api/") {
		return true
	}
	mt, _, _ := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	return mt == echo.MIMEApplicationJSON
}

// errorPage fills the error page: a heading, the sentence, and one link that
// fits what the visitor can do next.
func (s *Server) errorPage(c echo.Context, status int, message string) errorPage {
	p := errorPage{basePage: s.base(headingOf(status)), Status: status, Message: message}
	p.NoIndex = true
	switch {
	case status == http.StatusGone:
		p.LinkURL, p.LinkText = s.prefix+"/", "Sign up again"
	case c.Request().URL.Path == "/subscribe":
		p.LinkURL, p.LinkText = s.prefix+"/", "Back to the signup form"
	case s.cfg.SiteURL != "":
		p.LinkURL, p.LinkText = s.cfg.SiteURL, "Back to "+s.cfg.SiteName
	default:
		p.LinkURL, p.LinkText = s.prefix+"/", "Go to the signup page"
	}
	return p
}

func headingOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "Something is wrong with that request"
	case http.StatusUnauthorized, http.StatusForbidden:
		return "Not allowed"
	case http.StatusNotFound:
		return "Not found"
	case http.StatusMethodNotAllowed:
		return "Not possible"
	case http.StatusConflict:
		return "Not possible right now"
	case http.StatusGone:
		return "This link has expired"
	case http.StatusRequestEntityTooLarge:
		return "Too much data"
	case http.StatusUnsupportedMediaType:
		return "Unsupported format"
	case http.StatusUnprocessableEntity:
		return "Please check what you entered"
	case http.StatusTooManyRequests:
		return "Too many attempts"
	case http.StatusServiceUnavailable:
		return "Temporarily unavailable"
	}
	return "Something went wrong"
}
