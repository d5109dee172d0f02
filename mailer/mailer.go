// Package mailer composes and moves single messages: MIME with the headers
// every Herald email carries, and the transports that hand them on (an SMTP
// relay, or .eml files in an outbox directory).
package mailer

import (
	"context"
	"strconv"
	"time"
)

// Header is one extra header field. Values must not contain CR or LF; the
// writer refuses them.
type Header struct {
	Name  string
	Value string
}

// Email is one message, ready to encode. From and To are bare addresses;
// FromName and ToName are display names.
type Email struct {
	FromName  string
	From      string
	ToName    string
	To        string
	ReplyTo   string
	Subject   string
	MessageID string // without angle brackets
	Date      time.Time
	Text      string
	HTML      string
	Headers   []Header // List-Unsubscribe, List-Unsubscribe-Post, List-Id, ...
	// ReturnPath is the envelope sender (MAIL FROM); empty means From.
	ReturnPath string
}

// Transport moves an encoded email to its next hop. Send may be called from
// several goroutines at once. Its errors are *SendError when the cause is
// known.
type Transport interface {
	Send(ctx context.Context, e *Email) error
	Close() error
}

// SendError is a failed send, classified so the delivery engine can decide
// between retrying, giving up and suppressing the address.
type SendError struct {
	Code      int    // SMTP reply code, 0 when none (network error)
	Stage     string // "dial", "mail", "rcpt", "data", "write"
	Permanent bool   // a 5xx reply or a message that can never be sent
	Err       error
}

// Error implements error.
func (e *SendError) Error() string {
	if e.Code != 0 {
		return e.Stage + ": " + strconv.Itoa(e.Code) + " " + e.Err.Error()
	}
	return e.Stage + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *SendError) Unwrap() error { return e.Err }

// Bounce reports whether the relay refused the recipient itself (a 5xx at
// RCPT), which means the address should be suppressed.
func (e *SendError) Bounce() bool { return e.Permanent && e.Stage == "rcpt" && e.Code >= 500 }
