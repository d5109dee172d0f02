// Package bounces reads what mail systems say back about Herald's email:
// RFC 3464 delivery status notifications (bounces) and RFC 5965 abuse
// feedback reports (complaints), from single messages, mbox files and
// Maildir directories, and the bounce and complaint webhooks of Amazon SES
// (through SNS), Postmark, SendGrid and Mailgun, each with its signature
// check. It also encodes and decodes VERP return paths.
//
// Everything here parses input from outside: every parser is bounded, never
// panics on malformed input (each has a fuzz test) and turns what it cannot
// read into an Event of kind Unparsed with the reason, rather than an error.
// The package decides nothing about subscribers; the caller applies events.
package bounces

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is what a report means for the recipient's address.
type Kind string

// The kinds of Event.
const (
	// Hard is a permanent failure: the address does not work (5.x.x).
	Hard Kind = "hard"
	// Soft is a temporary failure that the sending system gave up on
	// (4.x.x): a full mailbox, a server down for days.
	Soft Kind = "soft"
	// Complaint is a recipient's "this is spam" (an ARF abuse report, a
	// provider's complaint event).
	Complaint Kind = "complaint"
	// Ignored is a well-formed report that needs no action: a delay
	// warning (the sender is still retrying), a delivery notice, a
	// provider event other than a bounce or complaint.
	Ignored Kind = "ignored"
	// Unparsed is input that is neither a bounce nor a complaint as far as
	// this package can tell; Reason says why.
	Unparsed Kind = "unparsed"
)

// Event is one report about one recipient of one message.
type Event struct {
	Kind Kind
	// Recipient is the address the report is about, lower-cased, as the
	// report gives it; empty when the report leaves it out or redacts it
	// (as many feedback loops do).
	Recipient string
	// MessageID is the Message-ID of the original message, without angle
	// brackets, when the report carries it.
	MessageID string
	// VERP is the VERP return path the report was addressed to, or the
	// original message carried, when it looks like one (see DecodeVERP).
	VERP string
	// ListUnsubscribe is the List-Unsubscribe header of the original
	// message, when the report includes it (feedback reports do): its
	// signed link names the reader even when the address is redacted.
	ListUnsubscribe string
	// Status is the RFC 3463 status code ("5.1.1"), when known.
	Status string
	// Reason is a short explanation: the diagnostic code of a bounce, the
	// feedback type of a complaint, why input was unparsed. Addresses in
	// it are replaced by "<address>".
	Reason string
	// At is when the report says the event happened; zero when unknown.
	At time.Time
	// Source names where the event came from: "ses", "postmark",
	// "sendgrid", "mailgun", or the file (and position) it was read from.
	Source string
	// ReportID identifies the report at its source (an SNS message id, a
	// SendGrid event id, ...), so that a report delivered twice is applied
	// once; empty when the source has none.
	ReportID string
}

// maxReason bounds Event.Reason.
const maxReason = 300

// addressRE finds anything that looks like an email address in free text.
var addressRE = regexp.MustCompile(`<?[^\s<>()\[\]"',;:]+@[^\s<>()\[\]"',;:]+>?`)

// cleanReason makes free text from a report fit for Event.Reason: one line,
// no control characters, no addresses, at most maxReason bytes.
func cleanReason(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\r' || r == '\n':
			return ' '
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			return -1
		}
		return r
	}, s)
	s = addressRE.ReplaceAllString(s, "<address>")
	s = strings.Join(strings.Fields(s), " ")
	return clip(s, maxReason)
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// cleanAddress returns a bare, lower-cased address, or "" when s does not
// look like one. It accepts the forms reports use: "rfc822; a@b",
// "<a@b>", "a@b".
func cleanAddress(s string) string {
	s = strings.TrimSpace(s)
	if typ, rest, ok := strings.Cut(s, ";"); ok && !strings.Contains(typ, "@") {
		if !strings.EqualFold(strings.TrimSpace(typ), "rfc822") {
			return "" // an X.400 or other non-Internet address
		}
		s = strings.TrimSpace(rest)
	}
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	s = strings.TrimSpace(s)
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 254 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == ',' {
			return ""
		}
	}
	return strings.ToLower(s)
}

// cleanMessageID returns a Message-ID without angle brackets and blanks, or
// "" when s is not one.
func cleanMessageID(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			s = s[i+1 : i+j]
		}
	}
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 998 || !strings.Contains(s, "@") {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return ""
		}
	}
	return s
}

// classifyStatus maps an RFC 3463 status code to Hard (5.x.x) or Soft
// (4.x.x); ok is false for anything else.
func classifyStatus(status string) (k Kind, ok bool) {
	status = strings.TrimSpace(status)
	if len(status) < 5 || status[1] != '.' {
		return "", false
	}
	switch status[0] {
	case '5':
		return Hard, true
	case '4':
		return Soft, true
	}
	return "", false
}

// statusCode returns the leading RFC 3463 code of a Status field
// ("5.1.1 (user unknown)" -> "5.1.1"), or "".
func statusCode(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t("); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ""
	}
	for i, p := range parts {
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) {
			return ""
		}
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return ""
			}
		}
	}
	return s
}
