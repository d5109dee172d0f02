package bounces

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PostmarkTokenHeader is the request header that may carry the Postmark
// webhook secret instead of HTTP Basic credentials (set it as a custom
// header of the webhook in Postmark).
const PostmarkTokenHeader = "X-Herald-Webhook-Token"

// PostmarkVerifier checks the credentials Postmark sends with a webhook:
// HTTP Basic auth (Postmark takes them in the webhook URL,
// https://user:password@host/webhooks/postmark), or the password alone in
// PostmarkTokenHeader.
type PostmarkVerifier struct {
	user, password [sha256.Size]byte
}

// NewPostmarkVerifier returns a verifier for the credentials; password must
// not be empty.
func NewPostmarkVerifier(user, password string) (*PostmarkVerifier, error) {
	if password == "" {
		return nil, errors.New("postmark webhook: the password is empty")
	}
	return &PostmarkVerifier{user: sha256.Sum256([]byte(user)), password: sha256.Sum256([]byte(password))}, nil
}

// Verify returns nil when h carries the credentials, else ErrForged. The
// comparison takes the same time whatever is wrong.
func (v *PostmarkVerifier) Verify(h http.Header) error {
	if tok := h.Get(PostmarkTokenHeader); tok != "" {
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], v.password[:]) == 1 {
			return nil
		}
		return ErrForged
	}
	r := http.Request{Header: h}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return ErrForged
	}
	gu, gp := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	if subtle.ConstantTimeCompare(gu[:], v.user[:])&subtle.ConstantTimeCompare(gp[:], v.password[:]) == 1 {
		return nil
	}
	return ErrForged
}

// postmarkEvent is a Postmark bounce or spam complaint webhook body.
type postmarkEvent struct {
	RecordType  string `json:"RecordType"`
	ID          int64  `json:"ID"`
	Type        string `json:"Type"`
	MessageID   string `json:"MessageID"` // Postmark's own id, not the Message-ID header
	Email       string `json:"Email"`
	Details     string `json:"Details"`
	BouncedAt   string `json:"BouncedAt"`
	Description string `json:"Description"`
}

// ParsePostmark reads a verified Postmark webhook body: a Bounce record
// (HardBounce and BadEmailAddress are hard; SoftBounce, Transient,
// DnsError and Blocked soft; a SpamComplaint bounce type a complaint) or a
// SpamComplaint record. Other records and bounce types (auto-responders,
// deliveries, opens) are Ignored. An error means the body is not JSON.
func ParsePostmark(body []byte) ([]Event, error) {
	var p postmarkEvent
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("the body is not a Postmark webhook: %v", err)
	}
	e := Event{
		Source:    "postmark",
		Recipient: cleanAddress(p.Email),
		At:        parseISO(p.BouncedAt),
		Reason:    cleanReason(orElse(p.Details, p.Description)),
	}
	if p.ID != 0 {
		e.ReportID = "postmark:" + strings.ToLower(p.RecordType) + ":" + strconv.FormatInt(p.ID, 10)
	}
	switch p.RecordType {
	case "Bounce":
		switch p.Type {
		case "HardBounce", "BadEmailAddress":
			e.Kind = Hard
		case "SoftBounce", "Transient", "DnsError", "Blocked":
			e.Kind = Soft
		case "SpamComplaint":
			e.Kind = Complaint
		default:
			e.Kind = Ignored
		}
		e.Reason = cleanReason(p.Type + ": " + e.Reason)
	case "SpamComplaint":
		e.Kind = Complaint
		e.Reason = cleanReason("spam complaint: " + e.Reason)
	default:
		e.Kind, e.Reason = Ignored, cleanReason("Postmark "+orElse(p.RecordType, "record without RecordType"))
	}
	if e.Kind != Ignored && e.Recipient == "" {
		return []Event{{Kind: Unparsed, Source: "postmark", Reason: "Postmark " + p.RecordType + " without an Email"}}, nil
	}
	return []Event{e}, nil
}

// SendGrid's signed event webhook headers.
const (
	SendGridSignatureHeader = "X-Twilio-Email-Event-Webhook-Signature"
	SendGridTimestampHeader = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// SendGridVerifier checks SendGrid's signed event webhook: an ECDSA P-256
// signature (ASN.1, base64) over SHA-256 of the timestamp header followed by
// the raw body.
type SendGridVerifier struct {
	key *ecdsa.PublicKey
}

// NewSendGridVerifier parses the verification key SendGrid shows: base64 of
// the DER public key, or the same in a PEM block.
func NewSendGridVerifier(publicKey string) (*SendGridVerifier, error) {
	publicKey = strings.TrimSpace(publicKey)
	var der []byte
	if blk, _ := pem.Decode([]byte(publicKey)); blk != nil {
		der = blk.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(publicKey)
		if err != nil {
			return nil, errors.New("sendgrid public key: neither PEM nor base64")
		}
		der = b
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("sendgrid public key: %v", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("sendgrid public key: not an ECDSA key")
	}
	return &SendGridVerifier{key: ek}, nil
}

// Verify returns nil when the headers' signature is SendGrid's over the
// timestamp and body, else ErrForged.
func (v *SendGridVerifier) Verify(h http.Header, body []byte) error {
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h.Get(SendGridSignatureHeader)))
	ts := h.Get(SendGridTimestampHeader)
	if err != nil || len(sig) == 0 || ts == "" {
		return ErrForged
	}
	d := sha256.New()
	d.Write([]byte(ts))
	d.Write(body)
	if !ecdsa.VerifyASN1(v.key, d.Sum(nil), sig) {
		return ErrForged
	}
	return nil
}

// sendGridEvent is one event of a SendGrid event webhook body.
type sendGridEvent struct {
	Email     string      `json:"email"`
	Timestamp json.Number `json:"timestamp"`
	Event     string      `json:"event"`
	Type      string      `json:"type"`
	Reason    string      `json:"reason"`
	Response  string      `json:"response"`
	Status    string      `json:"status"`
	SMTPID    string      `json:"smtp-id"`
	EventID   string      `json:"sg_event_id"`
}

// maxSendGridEvents bounds the events read from one SendGrid request.
const maxSendGridEvents = 5000

// ParseSendGrid reads a verified SendGrid event webhook body (a JSON array):
// a bounce event is hard, or soft when its type is "blocked"; a spamreport
// is a complaint; every other event (deferred, delivered, open, dropped...)
// is Ignored. An element that does not decode is Unparsed; an error means
// the body is not a JSON array.
func ParseSendGrid(body []byte) ([]Event, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("the body is not a SendGrid event array: %v", err)
	}
	if len(raw) > maxSendGridEvents {
		return nil, fmt.Errorf("more than %d SendGrid events in one request", maxSendGridEvents)
	}
	events := make([]Event, 0, len(raw))
	for _, r := range raw {
		var s sendGridEvent
		if err := json.Unmarshal(r, &s); err != nil {
			events = append(events, Event{Kind: Unparsed, Source: "sendgrid", Reason: cleanReason("undecodable event: " + err.Error())})
			continue
		}
		e := Event{
			Source:    "sendgrid",
			Recipient: cleanAddress(s.Email),
			MessageID: cleanMessageID(s.SMTPID),
			Status:    statusCode(s.Status),
			Reason:    cleanReason(orElse(s.Reason, s.Response)),
		}
		if sec, err := s.Timestamp.Int64(); err == nil && sec > 0 {
			e.At = time.Unix(sec, 0).UTC()
		}
		if s.EventID != "" {
			e.ReportID = "sendgrid:" + clip(s.EventID, 200)
		}
		switch s.Event {
		case "bounce":
			e.Kind = Hard
			if s.Type == "blocked" {
				e.Kind = Soft
			}
		case "spamreport":
			e.Kind, e.Reason = Complaint, "spam report"
		default:
			e.Kind, e.Reason = Ignored, cleanReason("SendGrid "+orElse(s.Event, "event without a name"))
		}
		if e.Kind != Ignored && e.Recipient == "" {
			e.Kind, e.Reason = Unparsed, "SendGrid "+s.Event+" without an email"
		}
		events = append(events, e)
	}
	return events, nil
}

// MailgunVerifier checks Mailgun's webhook signatures: HMAC-SHA256 under
// the webhook signing key of the timestamp followed by the token, hex. A
// timestamp more than Tolerance from now is ErrStale, and a token seen
// within the window is ErrReplay. It is safe for concurrent use.
type MailgunVerifier struct {
	key       []byte
	tolerance time.Duration
	now       func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // token -> when it may be forgotten
}

// DefaultMailgunTolerance is how far a Mailgun timestamp may be from now.
const DefaultMailgunTolerance = 5 * time.Minute

// maxSeenTokens bounds the replay cache.
const maxSeenTokens = 100_000

// NewMailgunVerifier returns a verifier for the signing key; tolerance 0
// means DefaultMailgunTolerance, now nil means time.Now.
func NewMailgunVerifier(key string, tolerance time.Duration, now func() time.Time) (*MailgunVerifier, error) {
	if key == "" {
		return nil, errors.New("mailgun webhook: the signing key is empty")
	}
	if tolerance <= 0 {
		tolerance = DefaultMailgunTolerance
	}
	if now == nil {
		now = time.Now
	}
	return &MailgunVerifier{key: []byte(key), tolerance: tolerance, now: now, seen: make(map[string]time.Time)}, nil
}

// mailgunBody is a Mailgun webhook body: the signature beside the event,
// which stays raw until the signature verified.
type mailgunBody struct {
	Signature struct {
		Timestamp string `json:"timestamp"`
		Token     string `json:"token"`
		Signature string `json:"signature"`
	} `json:"signature"`
	EventData json.RawMessage `json:"event-data"`
}

// Verify checks a Mailgun webhook body and returns its event-data, still
// undecoded, and the token, which it holds as seen: call Release(token)
// when the event could not be processed, so that Mailgun's retry is
// accepted. Errors are ErrForged, ErrStale or ErrReplay.
func (v *MailgunVerifier) Verify(body []byte) (eventData json.RawMessage, token string, err error) {
	var b mailgunBody
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, "", ErrForged
	}
	s := b.Signature
	mac, err := hex.DecodeString(s.Signature)
	if err != nil || len(mac) != sha256.Size || s.Token == "" || len(s.Token) > 200 || s.Timestamp == "" {
		return nil, "", ErrForged
	}
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(s.Timestamp))
	m.Write([]byte(s.Token))
	if !hmac.Equal(mac, m.Sum(nil)) {
		return nil, "", ErrForged
	}
	sec, err := strconv.ParseInt(s.Timestamp, 10, 64)
	if err != nil {
		return nil, "", ErrForged
	}
	now := v.now()
	at := time.Unix(sec, 0)
	if at.Before(now.Add(-v.tolerance)) || at.After(now.Add(v.tolerance)) {
		return nil, "", ErrStale
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for t, until := range v.seen {
		if now.After(until) {
			delete(v.seen, t)
		}
	}
	if _, dup := v.seen[s.Token]; dup {
		return nil, "", ErrReplay
	}
	if len(v.seen) >= maxSeenTokens {
		return nil, "", fmt.Errorf("%w: too many recent tokens to check replays", ErrReplay)
	}
	// A token outlives its window by one tolerance: past that its
	// timestamp is stale anyway.
	v.seen[s.Token] = at.Add(2 * v.tolerance)
	return b.EventData, s.Token, nil
}

// Release forgets a token Verify accepted, for a request that failed.
func (v *MailgunVerifier) Release(token string) {
	v.mu.Lock()
	delete(v.seen, token)
	v.mu.Unlock()
}

// mailgunEvent is the event-data of a Mailgun webhook.
type mailgunEvent struct {
	ID        string  `json:"id"`
	Event     string  `json:"event"`
	Severity  string  `json:"severity"`
	Reason    string  `json:"reason"`
	Recipient string  `json:"recipient"`
	Timestamp float64 `json:"timestamp"`
	Envelope  struct {
		Sender string `json:"sender"`
	} `json:"envelope"`
	Message struct {
		Headers struct {
			MessageID string `json:"message-id"`
		} `json:"headers"`
	} `json:"message"`
	DeliveryStatus struct {
		Code        int    `json:"code"`
		Message     string `json:"message"`
		Description string `json:"description"`
	} `json:"delivery-status"`
}

// ParseMailgun reads the event-data of a verified Mailgun webhook: a
// permanent failure is hard (soft when Mailgun gave up retrying a
// temporary one, reason "old"); a complaint is a complaint; a temporary
// failure (Mailgun still retries) and every other event are Ignored. An
// error means the event-data is not a Mailgun event.
func ParseMailgun(eventData json.RawMessage) ([]Event, error) {
	var m mailgunEvent
	if err := json.Unmarshal(eventData, &m); err != nil || m.Event == "" {
		return nil, fmt.Errorf("the body has no Mailgun event-data")
	}
	e := Event{
		Source:    "mailgun",
		Recipient: cleanAddress(m.Recipient),
		MessageID: cleanMessageID(m.Message.Headers.MessageID),
	}
	if strings.HasPrefix(strings.ToLower(m.Envelope.Sender), VERPPrefix) {
		e.VERP = cleanAddress(m.Envelope.Sender)
	}
	if m.Timestamp > 0 && m.Timestamp < 1<<40 {
		e.At = time.Unix(int64(m.Timestamp), 0).UTC()
	}
	if m.ID != "" {
		e.ReportID = "mailgun:" + clip(m.ID, 200)
	}
	ds := m.DeliveryStatus
	detail := orElse(ds.Description, ds.Message)
	if ds.Code != 0 {
		detail = strconv.Itoa(ds.Code) + " " + detail
	}
	switch {
	case m.Event == "failed" && m.Severity == "permanent":
		e.Kind = Hard
		if m.Reason == "old" {
			e.Kind = Soft
		}
		e.Reason = cleanReason(orElse(m.Reason, "failed") + ": " + detail)
	case m.Event == "complained":
		e.Kind, e.Reason = Complaint, "complaint"
	default:
		e.Kind, e.Reason = Ignored, cleanReason("Mailgun "+m.Event+" "+m.Severity)
	}
	if e.Kind != Ignored && e.Recipient == "" {
		e.Kind, e.Reason = Unparsed, "Mailgun "+m.Event+" without a recipient"
	}
	return []Event{e}, nil
}
