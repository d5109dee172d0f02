package bounces

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// MaxMessageSize is the largest message ParseMessage reads; a larger one is
// Unparsed. Bounces quote at most the original message, and Herald's are
// small.
const MaxMessageSize = 10 << 20

const (
	maxDepth      = 5   // multipart nesting searched for the report
	maxParts      = 50  // parts read in one multipart
	maxDSNBlocks  = 100 // field groups read from one delivery-status part
	maxRecipients = 20  // events taken from one report
)

// ParseMessage reads one email and returns what it reports: one Event per
// recipient of an RFC 3464 delivery status notification (multipart/report;
// report-type=delivery-status, also the RFC 6533 global variant), one
// Complaint for an RFC 5965 abuse report (report-type=feedback-report), or
// a single Unparsed event saying why it is neither. It never returns an
// empty slice. source goes into every event's Source.
func ParseMessage(r io.Reader, source string) []Event {
	data, err := io.ReadAll(io.LimitReader(r, MaxMessageSize+1))
	if err != nil {
		return unparsed(source, "cannot read the message: %v", err)
	}
	if len(data) > MaxMessageSize {
		return unparsed(source, "the message is larger than %d MiB", MaxMessageSize>>20)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return unparsed(source, "not an email message: %v", err)
	}
	env := envelope{date: parseDate(msg.Header.Get("Date"))}
	for _, h := range []string{"Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"} {
		for _, v := range msg.Header[textproto.CanonicalMIMEHeaderKey(h)] {
			if a := verpCandidate(v); a != "" && env.verp == "" {
				env.verp = a
			}
		}
	}
	rep, err := findReport(textproto.MIMEHeader(msg.Header), msg.Body, 0)
	if err != nil {
		return unparsed(source, "%v", err)
	}
	var events []Event
	switch rep.reportType {
	case "delivery-status", "global-delivery-status":
		events, err = rep.dsn(env)
	case "feedback-report":
		events, err = rep.arf(env)
	default:
		err = fmt.Errorf("a report of type %q, neither delivery-status nor feedback-report", clip(rep.reportType, 40))
	}
	if err != nil {
		return unparsed(source, "%v", err)
	}
	for i := range events {
		events[i].Source = source
	}
	return events
}

// unparsed returns the single Unparsed event of a message.
func unparsed(source, format string, args ...any) []Event {
	return []Event{{Kind: Unparsed, Reason: cleanReason(fmt.Sprintf(format, args...)), Source: source}}
}

// envelope is what the report message itself says beside its parts.
type envelope struct {
	date time.Time
	verp string // a VERP address the report was delivered to
}

// part is one decoded MIME part of a report.
type part struct {
	mediaType string
	body      []byte
}

// report is a multipart/report's type and parts.
type report struct {
	reportType string
	parts      []part
}

// errNotReport says a message holds no multipart/report.
type errNotReport struct{ contentType string }

func (e errNotReport) Error() string {
	return fmt.Sprintf("not a delivery status notification or feedback report (content type %s)", e.contentType)
}

// findReport returns the first multipart/report in a message, looking
// inside other multiparts (a report forwarded as an attachment) up to
// maxDepth levels.
func findReport(h textproto.MIMEHeader, body io.Reader, depth int) (*report, error) {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("unreadable content type %q: %v", clip(ct, 60), err)
	}
	if !strings.HasPrefix(mediaType, "multipart/") {
		return nil, errNotReport{contentType: mediaType}
	}
	if depth >= maxDepth {
		return nil, errors.New("multipart nesting is too deep")
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, fmt.Errorf("%s without a boundary", mediaType)
	}
	mr := multipart.NewReader(body, boundary)
	var parts []part
	for i := 0; ; i++ {
		if i == maxParts {
			return nil, fmt.Errorf("%s has more than %d parts", mediaType, maxParts)
		}
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("malformed %s: %v", mediaType, err)
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil || pt == "" {
			pt = "text/plain"
		}
		if mediaType != "multipart/report" && strings.HasPrefix(pt, "multipart/") {
			if rep, err := findReport(p.Header, p, depth+1); err == nil {
				return rep, nil
			}
			continue
		}
		var r io.Reader = p
		// multipart decodes quoted-printable itself; base64 is ours to undo.
		if strings.EqualFold(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding")), "base64") {
			r = base64.NewDecoder(base64.StdEncoding, newlineSkipper{p})
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("malformed %s part: %v", pt, err)
		}
		parts = append(parts, part{mediaType: pt, body: b})
	}
	if mediaType != "multipart/report" {
		return nil, errNotReport{contentType: mediaType}
	}
	return &report{reportType: strings.ToLower(params["report-type"]), parts: parts}, nil
}

// newlineSkipper drops line breaks and the blanks some mailers leave at
// the ends of base64 lines, which base64.NewDecoder would reject.
type newlineSkipper struct{ r io.Reader }

func (n newlineSkipper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// find returns the first part of one of the media types.
func (r *report) find(types ...string) *part {
	for i := range r.parts {
		for _, t := range types {
			if r.parts[i].mediaType == t {
				return &r.parts[i]
			}
		}
	}
	return nil
}

// original is what a report quotes of the original message.
type original struct {
	messageID       string
	listUnsubscribe string
	to              string
	verp            string
}

// original reads the headers of the original message: a message/rfc822
// part or a text/rfc822-headers one (or their RFC 6532 global variants).
func (r *report) original() original {
	p := r.find("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers")
	if p == nil {
		return original{}
	}
	h, _ := readFields(p.body)
	o := original{
		messageID:       cleanMessageID(h.Get("Message-Id")),
		listUnsubscribe: clip(strings.Join(strings.Fields(h.Get("List-Unsubscribe")), " "), 1000),
		to:              firstAddress(h.Get("To")),
	}
	for _, v := range h["Return-Path"] {
		if a := verpCandidate(v); a != "" {
			o.verp = a
			break
		}
	}
	return o
}

// readFields reads one block of header fields. A block cut short by the
// end of the part (headers quoted without their blank line) is kept.
func readFields(b []byte) (textproto.MIMEHeader, error) {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	h, err := tr.ReadMIMEHeader()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	if h == nil {
		h = textproto.MIMEHeader{}
	}
	return h, err
}

// dsn turns a delivery-status report into one event per recipient.
func (r *report) dsn(env envelope) ([]Event, error) {
	p := r.find("message/delivery-status", "message/global-delivery-status")
	if p == nil {
		return nil, errors.New("delivery status notification without a message/delivery-status part")
	}
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(p.body)))
	var perMessage textproto.MIMEHeader
	var rcpts []textproto.MIMEHeader
	for range maxDSNBlocks {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			if h.Get("Final-Recipient") != "" || h.Get("Original-Recipient") != "" || h.Get("Action") != "" {
				rcpts = append(rcpts, h)
			} else if perMessage == nil {
				perMessage = h
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("malformed delivery-status fields: %v", err)
		}
	}
	if len(rcpts) == 0 {
		return nil, errors.New("delivery status notification without per-recipient fields")
	}
	orig := r.original()
	verp := env.verp
	if verp == "" {
		verp = orig.verp
	}
	var events []Event
	for _, h := range rcpts[:min(len(rcpts), maxRecipients)] {
		e := Event{
			Recipient: cleanAddress(h.Get("Final-Recipient")),
			MessageID: orig.messageID,
			VERP:      verp,
			Status:    statusCode(h.Get("Status")),
			At:        parseDate(h.Get("Last-Attempt-Date")),
		}
		if e.Recipient == "" {
			e.Recipient = cleanAddress(h.Get("Original-Recipient"))
		}
		if e.At.IsZero() {
			e.At = parseDate(perMessage.Get("Arrival-Date"))
		}
		if e.At.IsZero() {
			e.At = env.date
		}
		diag := h.Get("Diagnostic-Code")
		if typ, rest, ok := strings.Cut(diag, ";"); ok && !strings.ContainsAny(typ, " \t") {
			diag = rest // drop the "smtp;" diagnostic type
		}
		action := strings.ToLower(strings.TrimSpace(h.Get("Action")))
		switch action {
		case "failed":
			k, ok := classifyStatus(e.Status)
			if !ok {
				e.Kind, e.Reason = Unparsed, cleanReason(fmt.Sprintf("failed recipient without a valid Status (%q)", clip(h.Get("Status"), 40)))
				break
			}
			e.Kind = k
			e.Reason = cleanReason(orElse(diag, "status "+e.Status))
		case "delayed", "delivered", "relayed", "expanded":
			e.Kind = Ignored
			e.Reason = cleanReason("action " + action + ": " + orElse(diag, "status "+e.Status))
		default:
			e.Kind = Unparsed
			e.Reason = cleanReason(fmt.Sprintf("unknown Action %q", clip(action, 40)))
		}
		events = append(events, e)
	}
	return events, nil
}

// arf turns a feedback report into a complaint (or an ignored report for
// feedback types that are not complaints).
func (r *report) arf(env envelope) ([]Event, error) {
	p := r.find("message/feedback-report")
	if p == nil {
		return nil, errors.New("feedback report without a message/feedback-report part")
	}
	h, err := readFields(p.body)
	if err != nil {
		return nil, fmt.Errorf("malformed feedback-report fields: %v", err)
	}
	ft := strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type")))
	if ft == "" {
		return nil, errors.New("feedback report without a Feedback-Type")
	}
	orig := r.original()
	e := Event{
		MessageID:       orig.messageID,
		ListUnsubscribe: orig.listUnsubscribe,
		VERP:            env.verp,
		At:              parseDate(h.Get("Arrival-Date")),
	}
	if e.VERP == "" {
		e.VERP = orig.verp
	}
	for _, v := range h["Original-Rcpt-To"] {
		if a := cleanAddress(v); a != "" {
			e.Recipient = a
			break
		}
	}
	if e.Recipient == "" {
		e.Recipient = orig.to
	}
	if e.At.IsZero() {
		e.At = parseDate(h.Get("Received-Date"))
	}
	if e.At.IsZero() {
		e.At = env.date
	}
	reason := "feedback type " + ft
	if ua := h.Get("User-Agent"); ua != "" {
		reason += " from " + ua
	} else if mta := h.Get("Reporting-Mta"); mta != "" {
		reason += " from " + mta
	}
	e.Reason = cleanReason(reason)
	switch ft {
	case "abuse", "fraud":
		e.Kind = Complaint
	default: // not-spam, virus, auth-failure (DMARC failure reports), other
		e.Kind = Ignored
	}
	if e.Kind == Complaint && e.Recipient == "" && e.MessageID == "" && e.ListUnsubscribe == "" && e.VERP == "" {
		return nil, errors.New("feedback report that names neither a recipient nor the original message")
	}
	return []Event{e}, nil
}

// firstAddress returns the first address of an address-list header.
func firstAddress(v string) string {
	if v == "" {
		return ""
	}
	if list, err := mail.ParseAddressList(v); err == nil && len(list) > 0 {
		return cleanAddress(list[0].Address)
	}
	return cleanAddress(v)
}

// verpCandidate returns the address in a header value if it looks like a
// VERP return path, or "".
func verpCandidate(v string) string {
	a := firstAddress(v)
	if strings.HasPrefix(a, VERPPrefix) {
		return a
	}
	return ""
}

// parseDate reads an RFC 5322 date; zero when it cannot.
func parseDate(s string) time.Time {
	if s = strings.TrimSpace(s); s == "" {
		return time.Time{}
	}
	t, err := mail.ParseDate(s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// orElse returns a unless it is blank, else b.
func orElse(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}
