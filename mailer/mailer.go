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

	// splice is set by DigestTemplate.Email: AppendTo then writes the
	// message from the pre-encoded digest, as long as the fields above
	// still hold what DigestTemplate.Email put there.
	splice *digestSplice
	// signed is set by DKIMTransport: AppendTo then writes the signed
	// bytes, as long as the fields above still hold what was signed.
	signed *preEncoded
	// invalid is why DigestTemplate.Email could not build the message;
	// Validate returns it.
	invalid error
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
	Enhanced  [3]int // RFC 3463 enhanced status code of the reply, zeros when none
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
	StageWait     = "wait"     // waiting for a free connection of the pool (temporary, not pool-wide)
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
//
// A 5xx at MAIL FROM (sender refused, authentication required) and any
// X.7.x security or policy refusal ("relay access denied") are pool-wide
// too: they say the relay will not take mail from us, not that one reader's
// address is bad, so they must not fail or suppress anyone.
func (e *SendError) PoolWide() bool {
	if e.Code == 421 {
		return true
	}
	switch e.Stage {
	case StageDial, StageHello, StageStartTLS, StageAuth:
		return true
	case StageMail:
		return e.Code >= 500
	}
	return e.Enhanced[0] != 0 && e.Enhanced[1] == 7
}

// Bounce reports whether the relay refused the recipient's address itself,
// which means the address should be suppressed: a 5xx at RCPT whose
// enhanced status code (RFC 3463) is an addressing error (5.1.x) or a
// disabled mailbox (5.2.1). Without an enhanced code only 550, 551 and 553
// count. Policy refusals (5.7.x, or a bare 554 such as Postfix's "Relay
// access denied") are about us, not the reader, and never bounce.
func (e *SendError) Bounce() bool {
	if !e.Permanent || e.Stage != StageRcpt || e.Code < 500 || e.PoolWide() {
		return false
	}
	if e.Enhanced[0] == 5 && (e.Enhanced[1] != 0 || e.Enhanced[2] != 0) { // 5.0.0 says nothing more than the code
		return e.Enhanced[1] == 1 || e.Enhanced[1] == 2 && e.Enhanced[2] == 1
	}
	return e.Code == 550 || e.Code == 551 || e.Code == 553
}

// parseEnhanced reads an RFC 3463 enhanced status code ("5.1.1") at the start
// of an SMTP reply's text; zeros when there is none.
func parseEnhanced(text string) [3]int {
	var out [3]int
	part, digits := 0, 0
	for i := 0; i < len(text) && i < 16; i++ {
		c := text[i]
		switch {
		case c >= '0' && c <= '9':
			out[part] = out[part]*10 + int(c-'0')
			digits++
			if digits > 3 {
				return [3]int{}
			}
		case c == '.' && digits > 0 && part < 2:
			part, digits = part+1, 0
		case (c == ' ' || c == '\t') && part == 2 && digits > 0:
			i = len(text)
		default:
			return [3]int{}
		}
	}
	if part != 2 || digits == 0 || out[0] < 2 || out[0] > 5 {
		return [3]int{}
	}
	return out
}
