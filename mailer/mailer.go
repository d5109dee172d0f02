// Package mailer composes and moves single messages: the text and HTML of
// each kind of email from the embedded templates (Composer), MIME with the
// headers every Herald email carries (Email.WriteTo), and the transports that
// hand them on (an SMTP relay over reused connections, or .eml files in an
// outbox directory).
package mailer

import (
	"context"
	"strconv"
	"strings"
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
	Stage     string // one of the Stage constants: "dial", "hello", "starttls", "auth", "mail", "rcpt", "data", "encode", "write"
	Permanent bool   // a 5xx reply or a message that can never be sent
	Err       error
}

// Error implements error.
func (e *SendError) Error() string {
	msg := "unknown error"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	// A *textproto.Error already says its code.
	if code := strconv.Itoa(e.Code); e.Code != 0 && !strings.Contains(msg, code) {
		return e.Stage + ": " + code + " " + msg
	}
	return e.Stage + ": " + msg
}

// Unwrap returns the cause.
func (e *SendError) Unwrap() error { return e.Err }

// Stages of a send, as SendError.Stage reports them.
const (
	StageDial     = "dial"     // connecting, implicit TLS handshake, greeting
	StageHello    = "hello"    // EHLO/HELO
	StageStartTLS = "starttls" // STARTTLS missing or failed
	StageAuth     = "auth"     // AUTH
	StageMail     = "mail"     // MAIL FROM
	StageRcpt     = "rcpt"     // RCPT TO
	StageData     = "data"     // DATA, the message, the final reply
	StageEncode   = "encode"   // the message itself cannot be encoded (always Permanent)
	StageWrite    = "write"    // writing the outbox file
)

// PoolWide reports whether the failure concerns the relay rather than this
// message: a 421 reply (the server is closing the connection) or a failure
// to connect, greet, start TLS or authenticate. The delivery engine should
// back off the whole pool and retry the message later, even when Permanent
// is set (a 535 at AUTH is a configuration problem, not a bad message).
func (e *SendError) PoolWide() bool {
	if e.Code == 421 {
		return true
	}
	switch e.Stage {
	case StageDial, StageHello, StageStartTLS, StageAuth:
		return true
	}
	return false
}

// Bounce reports whether the relay refused the recipient itself (a 5xx at
// RCPT), which means the address should be suppressed.
func (e *SendError) Bounce() bool { return e.Permanent && e.Stage == "rcpt" && e.Code >= 500 }
