// Package herald holds what every part of Herald shares: the error type that
// carries a code and a message safe to show a visitor.
package herald

import (
	"errors"
	"fmt"
)

// Error codes. The web layer maps each to an HTTP status; nothing else should
// depend on their spelling.
const (
	EINVALID      = "invalid"      // the input is wrong: 422
	EBADREQUEST   = "bad_request"  // the request itself is malformed: 400
	ENOTFOUND     = "not_found"    // no such thing: 404
	EGONE         = "gone"         // it existed but is expired or used: 410
	ECONFLICT     = "conflict"     // the state forbids it: 409
	EUNAUTHORIZED = "unauthorized" // missing or wrong credentials: 401
	EFORBIDDEN    = "forbidden"    // credentials lack the right: 403
	ETOOLARGE     = "too_large"    // the body is over the limit: 413
	EUNSUPPORTED  = "unsupported"  // wrong content type: 415
	ERATELIMIT    = "rate_limited" // too many requests: 429
	EUNAVAILABLE  = "unavailable"  // a dependency is down: 503
	EINTERNAL     = "internal"     // our fault: 500, detail only in the log
)

// Error is a domain error: Code says what kind of failure it is, Message is a
// sentence that may be shown to whoever caused it.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("herald error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, or a
// generic sentence for any other error, so that internal detail never leaks.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Something went wrong on our side. Please try again in a moment."
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code string) bool { return ErrorCode(err) == code }
