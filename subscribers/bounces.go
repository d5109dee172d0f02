package subscribers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"herald"
	"herald/bounces"
)

// Bounces and complaints: what mail systems report back about a reader's
// address. A hard bounce suppresses the address (status bounced); soft
// bounces are counted, and enough of them within a window suppress it too;
// a complaint ("this is spam") unsubscribes the reader from everything at
// once (status complained). A report that names no subscriber is logged as
// unmatched and changes nothing else; a report that could not be read is
// logged as unparsed. Every report lands in the bounce log, without the
// address it was about.

// Defaults of the soft bounce rule.
const (
	DefaultSoftBounceThreshold = 5
	DefaultSoftBounceWindow    = 30 * 24 * time.Hour
)

// Activity log event kinds of bounces and complaints.
const (
	EventBounce    = "bounce"
	EventComplaint = "complaint"
)

// FeedbackKind is what a report says about an address.
type FeedbackKind string

// The kinds of Feedback.
const (
	FeedbackHard      FeedbackKind = "hard"
	FeedbackSoft      FeedbackKind = "soft"
	FeedbackComplaint FeedbackKind = "complaint"
	// FeedbackUnparsed is a report that could not be read; it is logged
	// with its reason and changes nothing.
	FeedbackUnparsed FeedbackKind = "unparsed"
)

// Recipient says whom a report is about. The fields are tried in this
// order, the first that names a subscriber wins: OutboxID (from a VERP
// return path, whose HMAC the caller verified), MessageID (of the original
// message), ListUnsubscribe (the original's header, whose signed link names
// the reader even when a feedback loop redacts the address), Email.
type Recipient struct {
	OutboxID        int64
	MessageID       string // without angle brackets
	ListUnsubscribe string
	Email           string
}

// Feedback is one bounce or complaint report about one recipient.
type Feedback struct {
	Kind FeedbackKind
	Recipient
	// Reason is a short explanation (a diagnostic code); any address in it
	// is blanked before it is stored.
	Reason string
	// Source names where the report came from ("ses", "import:PATH", ...).
	Source string
	// ReportID identifies the report at its source; a report whose id was
	// logged before is skipped (FeedbackDuplicate). Empty: no check.
	ReportID string
	// At is when the report says it happened; zero means now.
	At time.Time
}

// FeedbackResult says what became of a report.
type FeedbackResult string

// The results of RecordFeedback.
const (
	// FeedbackApplied: the report named a subscriber and was applied
	// (Changed says whether their status changed).
	FeedbackApplied FeedbackResult = "applied"
	// FeedbackUnmatched: no subscriber matched; only the log changed.
	FeedbackUnmatched FeedbackResult = "unmatched"
	// FeedbackNotParsed: the report was unparsed; only the log changed.
	FeedbackNotParsed FeedbackResult = "unparsed"
	// FeedbackDuplicate: the report was recorded before; nothing changed.
	FeedbackDuplicate FeedbackResult = "duplicate"
)

// FeedbackOutcome is the result of one report.
type FeedbackOutcome struct {
	Result       FeedbackResult
	SubscriberID int64  // 0 unless applied
	Status       Status // the subscriber's status afterwards, when applied
	Changed      bool   // the status changed
	SoftBounces  int    // the soft bounce count afterwards, for a soft bounce
}

// FeedbackLog is one row of the bounce log.
type FeedbackLog struct {
	At           time.Time // when the report says it happened
	ReceivedAt   time.Time
	Kind         FeedbackKind
	Result       FeedbackResult // applied, unmatched or unparsed
	SubscriberID int64          // 0: none matched
	Reason       string         // no addresses
	Source       string
	ReportID     string // "" for none
}

// FeedbackTx is what recording bounces and complaints needs of a write
// transaction beside Tx. A store records feedback when the Tx its Update
// passes implements FeedbackTx.
type FeedbackTx interface {
	Tx
	// SubscriberByMessageID returns the subscriber the outbox message with
	// that Message-ID (without angle brackets) was for, or ENOTFOUND.
	SubscriberByMessageID(messageID string) (*Subscriber, error)
	// SubscriberByOutboxID returns the subscriber the outbox message with
	// that id was for, or ENOTFOUND.
	SubscriberByOutboxID(id int64) (*Subscriber, error)
	// AddSoftBounce counts a soft bounce of the subscriber at at and
	// returns the count: it starts again at 1 when the previous one was
	// before since. ENOTFOUND for an unknown subscriber.
	AddSoftBounce(subscriberID int64, at, since time.Time) (int, error)
	// LogFeedback appends to the bounce log. It returns false, and writes
	// nothing, when l.ReportID is not empty and was logged before.
	LogFeedback(l FeedbackLog) (bool, error)
}

// softRule returns the soft bounce threshold and window in force.
func (s *Service) softRule() (int, time.Duration) {
	n, w := s.opts.SoftBounceThreshold, s.opts.SoftBounceWindow
	if n <= 0 {
		n = DefaultSoftBounceThreshold
	}
	if w <= 0 {
		w = DefaultSoftBounceWindow
	}
	return n, w
}

// RecordBounce records a hard (permanent) or soft bounce of one message to
// r. It is RecordFeedback for a single report.
func (s *Service) RecordBounce(ctx context.Context, r Recipient, hard bool, reason, source string) (FeedbackOutcome, error) {
	kind := FeedbackSoft
	if hard {
		kind = FeedbackHard
	}
	out, err := s.RecordFeedback(ctx, []Feedback{{Kind: kind, Recipient: r, Reason: reason, Source: source}})
	if err != nil {
		return FeedbackOutcome{}, err
	}
	return out[0], nil
}

// RecordComplaint records a complaint about a message to r: the reader is
// unsubscribed from every newsletter at once. It is RecordFeedback for a
// single report.
func (s *Service) RecordComplaint(ctx context.Context, r Recipient, reason, source string) (FeedbackOutcome, error) {
	out, err := s.RecordFeedback(ctx, []Feedback{{Kind: FeedbackComplaint, Recipient: r, Reason: reason, Source: source}})
	if err != nil {
		return FeedbackOutcome{}, err
	}
	return out[0], nil
}

// RecordFeedback applies reports in one transaction and returns one outcome
// per report, in order:
//
//   - hard bounce: the subscriber becomes bounced (suppressed), unless they
//     complained already;
//   - soft bounce: counted; the SoftBounceThreshold-th within
//     SoftBounceWindow makes the subscriber bounced;
//   - complaint: the subscriber becomes complained, with no newsletters;
//   - a report that matches no subscriber, or is unparsed, changes nothing
//     but the bounce log.
//
// Every status change goes into the subscriber's activity log. EINVALID for
// an unknown kind (and nothing is written); EUNAVAILABLE when the store
// cannot record feedback.
func (s *Service) RecordFeedback(ctx context.Context, fs []Feedback) ([]FeedbackOutcome, error) {
	if len(fs) == 0 {
		return nil, nil
	}
	for _, f := range fs {
		switch f.Kind {
		case FeedbackHard, FeedbackSoft, FeedbackComplaint, FeedbackUnparsed:
		default:
			return nil, herald.Errorf(herald.EINVALID, "Unknown feedback kind %q.", clip(string(f.Kind), 40))
		}
	}
	ctx, cancel := detach(ctx)
	defer cancel()
	now := s.now()
	out := make([]FeedbackOutcome, len(fs))
	err := s.store.Update(ctx, func(tx Tx) error {
		ftx, ok := tx.(FeedbackTx)
		if !ok {
			return herald.Errorf(herald.EUNAVAILABLE, "This database cannot record bounces and complaints.")
		}
		for i, f := range fs {
			o, err := s.recordOne(ftx, f, now)
			if err != nil {
				return fmt.Errorf("record %s report: %w", f.Kind, err)
			}
			out[i] = o
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, o := range out {
		if o.Result == FeedbackDuplicate {
			continue
		}
		s.opts.Logger.InfoContext(ctx, "bounce report recorded", "kind", string(fs[i].Kind), "result", string(o.Result),
			"subscriber_id", o.SubscriberID, "status_changed", o.Changed, "source", clip(fs[i].Source, 200))
	}
	return out, nil
}

// recordOne logs and applies one report inside a transaction.
func (s *Service) recordOne(tx FeedbackTx, f Feedback, now time.Time) (FeedbackOutcome, error) {
	at := f.At.UTC()
	if at.IsZero() || at.After(now) {
		at = now
	}
	reason := redactAddresses(f.Reason)
	entry := FeedbackLog{At: at, ReceivedAt: now, Kind: f.Kind, Reason: reason, Source: clip(f.Source, 500), ReportID: clip(f.ReportID, 300)}
	var sub *Subscriber
	if f.Kind == FeedbackUnparsed {
		entry.Result = FeedbackNotParsed
	} else {
		var err error
		if sub, err = s.match(tx, f.Recipient); err != nil {
			return FeedbackOutcome{}, err
		}
		entry.Result = FeedbackUnmatched
		if sub != nil {
			entry.Result, entry.SubscriberID = FeedbackApplied, sub.ID
		}
	}
	logged, err := tx.LogFeedback(entry)
	if err != nil {
		return FeedbackOutcome{}, err
	}
	if !logged {
		return FeedbackOutcome{Result: FeedbackDuplicate}, nil
	}
	if sub == nil {
		return FeedbackOutcome{Result: entry.Result}, nil
	}
	o := FeedbackOutcome{Result: FeedbackApplied, SubscriberID: sub.ID, Status: sub.Status}
	via := clip(f.Source, 60)
	if reason != "" {
		via += ": " + reason
	}
	switch f.Kind {
	case FeedbackHard:
		if sub.Status == StatusBounced || sub.Status == StatusComplained {
			return o, nil // a complaint is the stronger signal; a bounce does not overwrite it
		}
		return s.setStatus(tx, sub, StatusBounced, nil, EventBounce, "hard bounce via "+via, now, o)
	case FeedbackSoft:
		threshold, window := s.softRule()
		n, err := tx.AddSoftBounce(sub.ID, at, at.Add(-window))
		if err != nil {
			return o, err
		}
		o.SoftBounces = n
		if sub.Status == StatusBounced || sub.Status == StatusComplained {
			return o, nil
		}
		detail := fmt.Sprintf("soft bounce %d of %d within %s via %s", n, threshold, days(window), via)
		if n < threshold {
			return o, tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventBounce, Detail: clip(detail, 200)})
		}
		return s.setStatus(tx, sub, StatusBounced, nil, EventBounce, detail, now, o)
	case FeedbackComplaint:
		if sub.Status == StatusComplained {
			return o, nil
		}
		return s.setStatus(tx, sub, StatusComplained, []string{}, EventComplaint, "complaint via "+via+"; unsubscribed from every newsletter", now, o)
	}
	return o, nil
}

// setStatus changes a subscriber's status (and newsletters, when not nil)
// and records why in the activity log.
func (s *Service) setStatus(tx FeedbackTx, sub *Subscriber, st Status, newsletters []string, kind, detail string, now time.Time, o FeedbackOutcome) (FeedbackOutcome, error) {
	sub.Status = st
	sub.UpdatedAt = now
	if newsletters != nil {
		sub.Newsletters = newsletters
	}
	if err := tx.UpdateSubscriber(sub); err != nil {
		return o, err
	}
	if err := tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: kind, Detail: clip(detail, 200)}); err != nil {
		return o, err
	}
	o.Status, o.Changed = st, true
	return o, nil
}

// match finds the subscriber a report names, or nil.
func (s *Service) match(tx FeedbackTx, r Recipient) (*Subscriber, error) {
	found := func(sub *Subscriber, err error) (*Subscriber, bool, error) {
		switch {
		case err == nil:
			return sub, true, nil
		case herald.IsCode(err, herald.ENOTFOUND):
			return nil, false, nil
		}
		return nil, false, err
	}
	tries := []func() (*Subscriber, error){
		func() (*Subscriber, error) {
			if r.OutboxID <= 0 {
				return nil, herald.Errorf(herald.ENOTFOUND, "")
			}
			return tx.SubscriberByOutboxID(r.OutboxID)
		},
		func() (*Subscriber, error) {
			id := strings.Trim(strings.TrimSpace(r.MessageID), "<>")
			if id == "" || len(id) > 998 {
				return nil, herald.Errorf(herald.ENOTFOUND, "")
			}
			return tx.SubscriberByMessageID(id)
		},
		func() (*Subscriber, error) {
			tok := unsubscribeToken(r.ListUnsubscribe)
			if tok == "" {
				return nil, herald.Errorf(herald.ENOTFOUND, "")
			}
			id, err := s.signer.verify(tok, signedUnsubscribe, s.now())
			if err != nil {
				return nil, herald.Errorf(herald.ENOTFOUND, "")
			}
			return tx.SubscriberByID(id)
		},
		func() (*Subscriber, error) {
			email, err := NormalizeAddress(r.Email)
			if r.Email == "" || err != nil {
				return nil, herald.Errorf(herald.ENOTFOUND, "")
			}
			return tx.SubscriberByEmail(email)
		},
	}
	for _, try := range tries {
		sub, ok, err := found(try())
		if err != nil || ok {
			return sub, err
		}
	}
	return nil, nil
}

// unsubscribeToken returns the token of the first Herald unsubscribe link
// (".../unsubscribe/TOKEN") in a List-Unsubscribe header or URL, or "".
func unsubscribeToken(v string) string {
	const marker = "/unsubscribe/"
	i := strings.Index(v, marker)
	if i < 0 {
		return ""
	}
	rest := v[i+len(marker):]
	if j := strings.IndexAny(rest, ">?#,/ \t"); j >= 0 {
		rest = rest[:j]
	}
	if len(rest) > 64 {
		return ""
	}
	return rest
}

// redactAddresses replaces every word that holds an "@" with "<address>"
// and cuts the result to 200 bytes: the bounce log and the activity log
// keep the reason, never an address.
func redactAddresses(s string) string {
	f := strings.Fields(s)
	for i, w := range f {
		if strings.Contains(w, "@") {
			f[i] = "<address>"
		}
	}
	return clip(strings.Join(f, " "), 200)
}

// days writes a window in days ("30 days"), or as a duration when it is
// not whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		n := int(d / (24 * time.Hour))
		if n == 1 {
			return "1 day"
		}
		return strconv.Itoa(n) + " days"
	}
	return d.String()
}

// FeedbackFromEvent turns a report read by package bounces into Feedback.
// A VERP return path is believed only when its HMAC verifies under
// verpKey (nil: VERP is off). ok is false for a report that needs no
// action (bounces.Ignored).
func FeedbackFromEvent(e bounces.Event, verpKey []byte) (f Feedback, ok bool) {
	switch e.Kind {
	case bounces.Hard:
		f.Kind = FeedbackHard
	case bounces.Soft:
		f.Kind = FeedbackSoft
	case bounces.Complaint:
		f.Kind = FeedbackComplaint
	case bounces.Unparsed:
		f.Kind = FeedbackUnparsed
	default:
		return Feedback{}, false
	}
	if e.VERP != "" && len(verpKey) > 0 {
		if id, ok := bounces.DecodeVERP(e.VERP, verpKey); ok {
			f.OutboxID = id
		}
	}
	f.MessageID, f.ListUnsubscribe, f.Email = e.MessageID, e.ListUnsubscribe, e.Recipient
	f.Reason, f.Source, f.ReportID, f.At = e.Reason, e.Source, e.ReportID, e.At
	if e.Status != "" && !strings.Contains(f.Reason, e.Status) {
		f.Reason = strings.TrimSpace(e.Status + " " + f.Reason)
	}
	return f, true
}
