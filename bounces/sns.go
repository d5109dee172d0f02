package bounces

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors of the webhook verifiers. Each means the request must be refused
// (401) and nothing in it believed.
var (
	// ErrForged is a missing, malformed or wrong signature or credential.
	ErrForged = errors.New("webhook signature or credentials do not verify")
	// ErrStale is a signed timestamp too far from now.
	ErrStale = errors.New("webhook timestamp is outside the accepted window")
	// ErrReplay is a signed request seen before.
	ErrReplay = errors.New("webhook request was already received")
)

// SNS message types.
const (
	SNSNotification             = "Notification"
	SNSSubscriptionConfirmation = "SubscriptionConfirmation"
	SNSUnsubscribeConfirmation  = "UnsubscribeConfirmation"
)

// SNSMessage is an Amazon SNS message whose signature verified.
type SNSMessage struct {
	Type             string  `json:"Type"`
	MessageID        string  `json:"MessageId"`
	TopicARN         string  `json:"TopicArn"`
	Subject          *string `json:"Subject"`
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
	SubscribeURL     string  `json:"SubscribeURL"`
	Token            string  `json:"Token"`
}

// CertFetcher fetches the PEM certificate at an https URL.
type CertFetcher func(ctx context.Context, url string) ([]byte, error)

// SNSVerifier checks Amazon SNS message signatures: the message must come
// from one of TopicARNs (anyone can create a topic and sign with it) and be
// signed (SignatureVersion 1, SHA-1, or 2, SHA-256) by the certificate at
// its SigningCertURL, which must be an https URL on an
// sns.<region>.amazonaws.com host. Certificates are fetched once and kept.
// It is safe for concurrent use.
type SNSVerifier struct {
	topics []string
	fetch  CertFetcher
	now    func() time.Time

	mu    sync.Mutex
	certs map[string]*x509.Certificate
}

// maxCachedCerts bounds the certificate cache; SNS uses one or two per region.
const maxCachedCerts = 16

// NewSNSVerifier returns a verifier accepting the topics. fetch gets the
// signing certificates; nil fetches them over HTTPS (FetchCertHTTPS). now
// is the clock for the certificates' validity (nil: time.Now).
func NewSNSVerifier(topics []string, fetch CertFetcher, now func() time.Time) *SNSVerifier {
	if fetch == nil {
		fetch = FetchCertHTTPS(&http.Client{Timeout: 10 * time.Second})
	}
	if now == nil {
		now = time.Now
	}
	return &SNSVerifier{topics: slices.Clone(topics), fetch: fetch, now: now, certs: make(map[string]*x509.Certificate)}
}

// snsCertHost is the host a signing certificate may come from.
var snsCertHost = regexp.MustCompile(`^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// CheckSNSURL returns an error unless raw is an https URL on an
// sns.<region>.amazonaws.com host (no user, no port), where SNS keeps its
// signing certificates and its subscription confirmation endpoint.
func CheckSNSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Port() != "" || !snsCertHost.MatchString(u.Host) {
		return fmt.Errorf("%w: not an https URL of an sns.<region>.amazonaws.com host", ErrForged)
	}
	return nil
}

// Verify checks an SNS request body and returns the message. Only the SNS
// envelope is decoded; the Message inside is left for ParseSES, to be read
// after the signature verified. The errors wrap ErrForged.
func (v *SNSVerifier) Verify(ctx context.Context, body []byte) (*SNSMessage, error) {
	var m SNSMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: the body is not an SNS message", ErrForged)
	}
	switch m.Type {
	case SNSNotification, SNSSubscriptionConfirmation, SNSUnsubscribeConfirmation:
	default:
		return nil, fmt.Errorf("%w: unknown SNS message type", ErrForged)
	}
	// The topic is checked first: a message from a topic we do not take
	// makes us fetch nothing.
	if !slices.Contains(v.topics, m.TopicARN) {
		return nil, fmt.Errorf("%w: a topic that is not configured", ErrForged)
	}
	var h crypto.Hash
	switch m.SignatureVersion {
	case "1":
		h = crypto.SHA1
	case "2":
		h = crypto.SHA256
	default:
		return nil, fmt.Errorf("%w: unknown SignatureVersion", ErrForged)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("%w: malformed signature", ErrForged)
	}
	if err := CheckSNSURL(m.SigningCertURL); err != nil {
		return nil, err
	}
	if !strings.HasSuffix(m.SigningCertURL, ".pem") {
		return nil, fmt.Errorf("%w: the signing certificate URL is not a .pem", ErrForged)
	}
	cert, err := v.cert(ctx, m.SigningCertURL)
	if err != nil {
		return nil, err
	}
	now := v.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%w: the signing certificate is not valid now", ErrForged)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: the signing certificate has no RSA key", ErrForged)
	}
	var digest []byte
	if h == crypto.SHA1 {
		d := sha1.Sum(m.stringToSign())
		digest = d[:]
	} else {
		d := sha256.Sum256(m.stringToSign())
		digest = d[:]
	}
	if err := rsa.VerifyPKCS1v15(pub, h, digest, sig); err != nil {
		return nil, fmt.Errorf("%w: the signature does not match", ErrForged)
	}
	return &m, nil
}

// stringToSign is what SNS signs: the message's fields, name and value on
// lines of their own, in a fixed order that depends on the type.
func (m *SNSMessage) stringToSign() []byte {
	var b strings.Builder
	add := func(k, v string) {
		b.WriteString(k)
		b.WriteByte('\n')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	add("Message", m.Message)
	add("MessageId", m.MessageID)
	if m.Type == SNSNotification {
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicARN)
		add("Type", m.Type)
	} else {
		add("SubscribeURL", m.SubscribeURL)
		add("Timestamp", m.Timestamp)
		add("Token", m.Token)
		add("TopicArn", m.TopicARN)
		add("Type", m.Type)
	}
	return []byte(b.String())
}

// cert returns the certificate at u, from the cache or fetched.
func (v *SNSVerifier) cert(ctx context.Context, u string) (*x509.Certificate, error) {
	v.mu.Lock()
	c, ok := v.certs[u]
	v.mu.Unlock()
	if ok {
		return c, nil
	}
	b, err := v.fetch(ctx, u)
	if err != nil {
		// Not ErrForged: a fetch that failed says nothing about the
		// message, and SNS will retry it.
		return nil, fmt.Errorf("fetch the SNS signing certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: the signing certificate is not PEM", ErrForged)
	}
	c, err = x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: the signing certificate does not parse", ErrForged)
	}
	v.mu.Lock()
	if len(v.certs) >= maxCachedCerts {
		clear(v.certs)
	}
	v.certs[u] = c
	v.mu.Unlock()
	return c, nil
}

// FetchCertHTTPS returns a CertFetcher over client that follows no
// redirect, takes only a 200 answer and reads at most 64 KiB.
func FetchCertHTTPS(client *http.Client) CertFetcher {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return func(ctx context.Context, u string) ([]byte, error) {
		if err := CheckSNSURL(u); err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET signing certificate: status %d", resp.StatusCode)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	}
}

// sesNotification is an Amazon SES bounce or complaint notification, as
// SES publishes it to SNS (notificationType) or through event publishing
// (eventType).
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Bounce           *struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		FeedbackID        string `json:"feedbackId"`
		Timestamp         string `json:"timestamp"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Action         string `json:"action"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint *struct {
		FeedbackID            string `json:"feedbackId"`
		Timestamp             string `json:"timestamp"`
		ComplaintFeedbackType string `json:"complaintFeedbackType"`
		ComplaintSubType      string `json:"complaintSubType"`
		UserAgent             string `json:"userAgent"`
		ComplainedRecipients  []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
	} `json:"complaint"`
	Mail struct {
		Source        string                         `json:"source"`
		Headers       []struct{ Name, Value string } `json:"headers"`
		CommonHeaders struct {
			MessageID string `json:"messageId"`
		} `json:"commonHeaders"`
	} `json:"mail"`
}

// ParseSES reads the SES notification in a verified SNS Notification: one
// event per bounced or complaining recipient, or a single Ignored event for
// other notifications (deliveries, sends, opens). An error means the
// Message is not an SES notification at all.
func ParseSES(m *SNSMessage) ([]Event, error) {
	var n sesNotification
	if err := json.Unmarshal([]byte(m.Message), &n); err != nil {
		return nil, fmt.Errorf("the SNS message is not an SES notification: %v", err)
	}
	typ := n.NotificationType
	if typ == "" {
		typ = n.EventType
	}
	base := Event{Source: "ses", MessageID: cleanMessageID(n.Mail.CommonHeaders.MessageID)}
	if strings.HasPrefix(strings.ToLower(n.Mail.Source), VERPPrefix) {
		base.VERP = cleanAddress(n.Mail.Source)
	}
	for _, h := range n.Mail.Headers {
		switch {
		case base.MessageID == "" && strings.EqualFold(h.Name, "Message-ID"):
			base.MessageID = cleanMessageID(h.Value)
		case strings.EqualFold(h.Name, "List-Unsubscribe"):
			base.ListUnsubscribe = clip(h.Value, 1000)
		}
	}
	id := func(feedbackID string, i int) string {
		if feedbackID == "" {
			feedbackID = m.MessageID
		}
		return "ses:" + clip(feedbackID, 200) + ":" + strconv.Itoa(i)
	}
	var events []Event
	switch {
	case typ == "Bounce" && n.Bounce != nil:
		b := n.Bounce
		kind := Soft // Transient and Undetermined
		if b.BounceType == "Permanent" {
			kind = Hard
		}
		for i, r := range b.BouncedRecipients[:min(len(b.BouncedRecipients), maxRecipients)] {
			e := base
			e.Kind, e.Recipient, e.Status = kind, cleanAddress(r.EmailAddress), statusCode(r.Status)
			e.Reason = cleanReason(orElse(r.DiagnosticCode, b.BounceType+" "+b.BounceSubType))
			e.At = parseISO(b.Timestamp)
			e.ReportID = id(b.FeedbackID, i)
			events = append(events, e)
		}
	case typ == "Complaint" && n.Complaint != nil:
		c := n.Complaint
		kind := Complaint
		if strings.EqualFold(c.ComplaintFeedbackType, "not-spam") {
			kind = Ignored
		}
		for i, r := range c.ComplainedRecipients[:min(len(c.ComplainedRecipients), maxRecipients)] {
			e := base
			e.Kind, e.Recipient = kind, cleanAddress(r.EmailAddress)
			e.Reason = cleanReason("complaint " + orElse(c.ComplaintFeedbackType, "(no feedback type)") + " " + c.UserAgent)
			e.At = parseISO(c.Timestamp)
			e.ReportID = id(c.FeedbackID, i)
			events = append(events, e)
		}
	case typ == "":
		return nil, errors.New("the SNS message is not an SES notification: no notificationType")
	default:
		e := base
		e.Kind, e.Reason, e.ReportID = Ignored, cleanReason("SES "+typ+" notification"), id("", 0)
		events = append(events, e)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("SES %s notification without recipients", clip(typ, 40))
	}
	return events, nil
}

// parseISO reads an RFC 3339 time; zero when it cannot.
func parseISO(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
