package subscribers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"herald"
)

// Defaults for Options left zero.
const (
	DefaultConfirmTTL      = 48 * time.Hour
	DefaultConfirmInterval = 10 * time.Minute
	UnsubscribeTokenTTL    = 3 * 365 * 24 * time.Hour
	PreferencesTokenTTL    = 365 * 24 * time.Hour
)

// Options configure a Service.
type Options struct {
	// Newsletters are the valid newsletter ids, in display order. A signup
	// that names none gets all of them.
	Newsletters []string
	// MessageIDDomain is the right-hand side of generated Message-IDs,
	// normally the domain of mail.from.
	MessageIDDomain string
	// ConsentVersion is the version of the consent wording currently shown;
	// it is recorded with each signup.
	ConsentVersion string
	// ConfirmTTL is how long a confirmation link works.
	ConfirmTTL time.Duration
	// ConfirmInterval is the least time between two confirmation emails to
	// one pending address, whatever the number of signups.
	ConfirmInterval time.Duration
	// SoftBounceThreshold is how many soft bounces within
	// SoftBounceWindow make an address bounced (RecordFeedback); default
	// DefaultSoftBounceThreshold and DefaultSoftBounceWindow.
	SoftBounceThreshold int
	SoftBounceWindow    time.Duration
	// IPMode is how much of a reader's IP address the consent records
	// keep (at signup and at confirmation); default IPTruncate.
	IPMode IPMode
	// MailCopies, when set, holds copies of sent mail outside the database
	// (the outbox transport's .eml files); Erase removes the erased
	// reader's copies from it. Retention has its own.
	MailCopies MailCopies
	Now        func() time.Time
	Logger     *slog.Logger
}

// MailCopies is a place that keeps copies of the mail sent to readers
// outside the database, such as a directory of .eml files.
type MailCopies interface {
	// ForgetRecipients removes every kept copy of mail addressed to one of
	// addrs and returns how many it removed. With keptBefore set, copies
	// kept at or after it stay: mail written since to an address that came
	// back. A place that does not exist (yet) holds nothing: 0 and no
	// error. Its errors contain no address.
	ForgetRecipients(ctx context.Context, addrs []string, keptBefore time.Time) (int, error)
}

// Service carries out what readers and operators do to subscribers.
type Service struct {
	store  Store
	opts   Options
	signer signer
	// privacy is store when it implements PrivacyStore, else nil: the
	// suppression list, export, erase and retention need it.
	privacy     PrivacyStore
	suppressMAC signer // keys the suppression list's address hashes
	ipKey       []byte // keys consent IPs in IPHash mode
}

// NewService returns a Service over store, loading (or creating, on first
// start) the key that signs unsubscribe and preference links, and, when
// store implements PrivacyStore, the key of the suppression list (and, in
// IPHash mode, the key of consent IPs).
func NewService(ctx context.Context, store Store, opts Options) (*Service, error) {
	if opts.ConfirmTTL <= 0 {
		opts.ConfirmTTL = DefaultConfirmTTL
	}
	if opts.ConfirmInterval <= 0 {
		opts.ConfirmInterval = DefaultConfirmInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MessageIDDomain == "" {
		opts.MessageIDDomain = "herald.invalid"
	}
	if len(opts.Newsletters) == 0 {
		return nil, fmt.Errorf("subscribers: at least one newsletter must be configured")
	}
	if opts.IPMode == "" {
		opts.IPMode = IPTruncate
	}
	if !opts.IPMode.Valid() {
		return nil, fmt.Errorf("subscribers: IPMode must be full, truncate or hash, got %q", opts.IPMode)
	}
	key, err := store.Secret(ctx, "token_key", newKey)
	if err != nil {
		return nil, fmt.Errorf("load token key: %w", err)
	}
	s := &Service{store: store, opts: opts, signer: newSigner(key)}
	if ps, ok := store.(PrivacyStore); ok {
		s.privacy = ps
		key, err := store.Secret(ctx, suppressionKeyName, newKey)
		if err != nil {
			return nil, fmt.Errorf("load suppression key: %w", err)
		}
		s.suppressMAC = newSigner(key)
	}
	if opts.IPMode == IPHash {
		if s.ipKey, err = store.Secret(ctx, ipKeyName, newKey); err != nil {
			return nil, fmt.Errorf("load consent IP key: %w", err)
		}
	}
	return s, nil
}

func (s *Service) now() time.Time { return s.opts.Now().UTC() }

// writeTimeout bounds a reader's write once it has been received.
const writeTimeout = 15 * time.Second

// detach returns a context for carrying out what a reader asked for: it
// keeps ctx's values but not its cancellation, so a mail provider's one-click
// unsubscribe, or a confirmation whose browser gave up waiting, still lands
// once received; it is bounded by writeTimeout instead.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
}

// SignupRequest is one signup as the web form or the JSON API received it.
type SignupRequest struct {
	Email       string
	Name        string
	Newsletters []string // empty: every newsletter
	IP          string
	UserAgent   string
	Source      string // the page the form was on, or "api"
}

// Signup records a signup and, when due, queues a confirmation email, all in
// one transaction. It returns nil in the same way whether the address is new,
// pending or already active, so the answer reveals nothing about who is
// subscribed. Invalid input is an EINVALID error naming the field.
//
// A pending address is sent at most one confirmation per ConfirmInterval:
// later signups inside that window write nothing and send nothing, so a
// victim of list bombing receives one email, not thousands.
func (s *Service) Signup(ctx context.Context, r SignupRequest) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	email, err := NormalizeAddress(r.Email)
	if err != nil {
		return err
	}
	name, err := NormalizeName(r.Name)
	if err != nil {
		return err
	}
	lists, err := s.checkNewsletters(r.Newsletters)
	if err != nil {
		return err
	}
	// Everything that needs no database is done before the write
	// transaction, and the suppression list is read on a read connection:
	// the transaction holds the store's one writer, which every signup
	// queues for, so each microsecond spent inside it is paid by all of
	// them. A suppressed address gets the same answer as any other, and
	// nothing is stored or sent.
	//
	// An address suppressed or erased between this read and the write below
	// still gets its signup recorded (after an erase, as a new pending
	// signup, which retention deletes with the other unconfirmed ones), but
	// never a confirmation: the renderer checks the suppression list again
	// when it composes any email, and cancels it.
	if suppressed, err := s.suppressed(ctx, email); err != nil {
		return fmt.Errorf("signup: %w", err)
	} else if suppressed {
		return nil
	}
	now := s.now()
	consent := &Consent{
		CreatedAt: now,
		IP:        s.consentIP(r.IP), UserAgent: clip(r.UserAgent, 512), Source: clip(r.Source, 1024),
		TextVersion: s.opts.ConsentVersion, Newsletters: lists,
	}
	signupEvent := Event{At: now, Kind: EventSignup, Detail: clip(r.Source, 200)}
	mid, err := s.newMessageID(KindConfirmation)
	if err != nil {
		return fmt.Errorf("signup: %w", err)
	}
	var queued bool
	var subscriberID int64
	err = s.store.Update(ctx, func(tx Tx) error {
		queued = false
		// Most signups are new addresses: insert first, and read the
		// existing row only when the address is taken (ECONFLICT leaves
		// the transaction usable). One statement instead of two in the
		// writer, and two signups of one new address at once both succeed.
		sub := &Subscriber{Email: email, Name: name, Status: StatusPending, Newsletters: lists, CreatedAt: now, UpdatedAt: now, ConfirmSentAt: now}
		err := tx.CreateSubscriber(sub)
		switch {
		case err == nil:
		case !herald.IsCode(err, herald.ECONFLICT):
			return err
		default:
			if sub, err = tx.SubscriberByEmail(email); err != nil {
				return err
			}
			switch sub.Status {
			case StatusActive, StatusComplained, StatusBounced:
				// Active readers change their choices through the
				// preference page; a complaint is never undone by a form;
				// a bounced address stays suppressed (mailing it again on
				// anyone's word would earn hard bounces, and anyone can
				// type it into a form).
				return nil
			case StatusPending, StatusUnsubscribed:
				if now.Sub(sub.ConfirmSentAt) < s.opts.ConfirmInterval {
					return nil
				}
				if sub.Status == StatusUnsubscribed {
					// The status stays unsubscribed until the reader
					// confirms: a stranger's signup changes nothing but
					// sending one confirmation.
					if err := tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventResubscribe, Detail: "confirmation requested"}); err != nil {
						return err
					}
				}
				// The choices travel in the consent record and take effect
				// when the reader confirms; until then only a pending
				// (never confirmed) signup's name may be replaced.
				if name != "" && sub.Status == StatusPending {
					sub.Name = name
				}
				sub.ConfirmSentAt = now
				sub.UpdatedAt = now
				if err := tx.UpdateSubscriber(sub); err != nil {
					return err
				}
			}
		}
		subscriberID = sub.ID
		c := *consent // a copy: a failed attempt must not leave its ID behind
		c.SubscriberID = sub.ID
		if err := tx.AddConsent(&c); err != nil {
			return err
		}
		e := signupEvent
		e.SubscriberID = sub.ID
		if err := tx.AddEvent(e); err != nil {
			return err
		}
		if err := enqueue(tx, sub, KindConfirmation, mid, now); err != nil {
			return err
		}
		queued = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("signup: %w", err)
	}
	if queued {
		s.opts.Logger.InfoContext(ctx, "signup recorded", "subscriber_id", subscriberID)
	}
	return nil
}

// queue writes one outbox row for sub.
func (s *Service) queue(tx Tx, sub *Subscriber, kind string, now time.Time) error {
	mid, err := s.newMessageID(kind)
	if err != nil {
		return err
	}
	return enqueue(tx, sub, kind, mid, now)
}

// enqueue writes one outbox row for sub with a Message-ID made beforehand.
func enqueue(tx Tx, sub *Subscriber, kind, mid string, now time.Time) error {
	if err := tx.Enqueue(OutboxMessage{Kind: kind, SubscriberID: sub.ID, MessageID: mid, CreatedAt: now}); err != nil {
		return fmt.Errorf("queue %s: %w", kind, err)
	}
	return nil
}

// newMessageID returns a globally unique msg-id for a transactional email.
// It starts with the time in milliseconds, so that consecutive ids sort
// together: the outbox's unique index then grows at its edge instead of
// touching a random page per insert.
func (s *Service) newMessageID(kind string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "herald." + kind + "." + strconv.FormatInt(s.now().UnixMilli(), 36) + "." + hex.EncodeToString(b) + "@" + s.opts.MessageIDDomain, nil
}

// checkNewsletters validates chosen newsletter ids, returning them sorted and
// without repeats; none chosen means all.
func (s *Service) checkNewsletters(ids []string) ([]string, error) {
	if len(ids) == 0 {
		out := slices.Clone(s.opts.Newsletters)
		slices.Sort(out)
		return out, nil
	}
	var unknown []string
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		id = strings.TrimSpace(id)
		if !slices.Contains(s.opts.Newsletters, id) {
			if len(unknown) < 5 {
				unknown = append(unknown, clip(id, 40))
			}
			continue
		}
		out = append(out, id)
	}
	if len(unknown) > 0 {
		return nil, herald.Errorf(herald.EINVALID, "Unknown newsletter: %s.", strings.Join(quoteAll(unknown), ", "))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CheckConfirmToken looks a confirmation token up without changing anything.
// It returns ENOTFOUND for an unknown, forged or malformed token and EGONE
// for one that has expired or was already used. It reads outside any write
// transaction: mail scanners fetch links ahead of the reader, and the check
// must not queue behind (or hold up) the signups for the one writer.
func (s *Service) CheckConfirmToken(ctx context.Context, token string) (*Subscriber, error) {
	sub, _, err := s.confirmable(readLookup{ctx, s.store}, token)
	return sub, err
}

// tokenLookup is what checking a stored token reads: a write transaction
// (Tx) when the token is about to be spent, readLookup when it is only
// checked.
type tokenLookup interface {
	TokenByHash(hash []byte) (*Token, error)
	SubscriberByID(id int64) (*Subscriber, error)
}

// readLookup reads tokens and subscribers outside any write transaction.
type readLookup struct {
	ctx   context.Context
	store Store
}

func (r readLookup) TokenByHash(hash []byte) (*Token, error) { return r.store.FindToken(r.ctx, hash) }
func (r readLookup) SubscriberByID(id int64) (*Subscriber, error) {
	return r.store.FindSubscriberByID(r.ctx, id)
}

// confirmable checks a confirmation token, read through l.
func (s *Service) confirmable(l tokenLookup, token string) (*Subscriber, *Token, error) {
	notValid := herald.Errorf(herald.ENOTFOUND, "This confirmation link is not valid. Please copy the whole link from the email, or sign up again.")
	if !wellFormedStored(token) {
		return nil, nil, notValid
	}
	t, err := l.TokenByHash(hashToken(token))
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, nil, notValid
	} else if err != nil {
		return nil, nil, err
	}
	if t.Purpose != PurposeConfirm {
		return nil, nil, notValid
	}
	sub, err := l.SubscriberByID(t.SubscriberID)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, nil, notValid
	} else if err != nil {
		return nil, nil, err
	}
	switch {
	case !t.UsedAt.IsZero() || sub.Status == StatusActive:
		return sub, t, herald.Errorf(herald.EGONE, "This confirmation link has already been used. If you confirmed, you are subscribed: no need to do it again.")
	case !s.now().Before(t.ExpiresAt):
		return sub, t, herald.Errorf(herald.EGONE, "This confirmation link has expired. Please sign up again and we will send you a new one.")
	case sub.Status != StatusPending && sub.Status != StatusUnsubscribed:
		return sub, t, herald.Errorf(herald.EGONE, "This subscription can no longer be confirmed. Please sign up again.")
	}
	return sub, t, nil
}

// Confirm activates the subscriber a confirmation token belongs to, marks the
// token used, records the confirmation on the signup's consent and queues the
// welcome email, in one transaction.
func (s *Service) Confirm(ctx context.Context, token, ip string) (*Subscriber, error) {
	ctx, cancel := detach(ctx)
	defer cancel()
	var sub *Subscriber
	now := s.now()
	err := s.store.Update(ctx, func(tx Tx) error {
		var (
			t   *Token
			err error
		)
		sub, t, err = s.confirmable(tx, token)
		if err != nil {
			return err
		}
		if err := tx.UseToken(t.Hash, now); err != nil {
			return err
		}
		sub.Status = StatusActive
		sub.ConfirmedAt = now
		sub.UpdatedAt = now
		if c, err := tx.LatestConsent(sub.ID); err == nil {
			if err := tx.ConfirmConsent(c.ID, now, s.consentIP(ip)); err != nil {
				return err
			}
			if len(c.Newsletters) > 0 {
				sub.Newsletters = c.Newsletters // what the reader chose in the signup they confirm
			}
		} else if !herald.IsCode(err, herald.ENOTFOUND) {
			return err
		}
		if err := tx.UpdateSubscriber(sub); err != nil {
			return err
		}
		if err := tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventConfirm}); err != nil {
			return err
		}
		return s.queue(tx, sub, KindWelcome, now)
	})
	if err != nil {
		if herald.ErrorCode(err) == herald.EINTERNAL {
			return nil, fmt.Errorf("confirm: %w", err)
		}
		return nil, err
	}
	s.opts.Logger.InfoContext(ctx, "subscriber confirmed", "subscriber_id", sub.ID)
	return sub, nil
}

// IssueConfirmToken creates a stored confirmation token for a subscriber and
// returns it; only its hash is kept. The delivery engine calls it when it
// renders a confirmation, so no raw token ever rests in the outbox.
func (s *Service) IssueConfirmToken(ctx context.Context, subscriberID int64) (string, error) {
	raw, hash, err := newStoredToken()
	if err != nil {
		return "", err
	}
	now := s.now()
	err = s.store.Update(ctx, func(tx Tx) error {
		return tx.CreateToken(Token{Hash: hash, SubscriberID: subscriberID, Purpose: PurposeConfirm, CreatedAt: now, ExpiresAt: now.Add(s.opts.ConfirmTTL)})
	})
	if err != nil {
		return "", fmt.Errorf("issue confirm token for subscriber %d: %w", subscriberID, err)
	}
	return raw, nil
}

// UnsubscribeToken returns the signed token for subscriberID's unsubscribe
// links. Minting it writes nothing.
func (s *Service) UnsubscribeToken(subscriberID int64) string {
	return s.signer.sign(signedUnsubscribe, subscriberID, s.now().Add(UnsubscribeTokenTTL))
}

// PreferencesToken returns the signed token for subscriberID's preference
// page links.
func (s *Service) PreferencesToken(subscriberID int64) string {
	return s.signer.sign(signedPreferences, subscriberID, s.now().Add(PreferencesTokenTTL))
}

// CheckUnsubscribeToken returns the subscriber an unsubscribe token names,
// changing nothing: ENOTFOUND when forged or the subscriber is gone, EGONE
// when expired.
func (s *Service) CheckUnsubscribeToken(ctx context.Context, token string) (*Subscriber, error) {
	id, err := s.signer.verify(token, signedUnsubscribe, s.now())
	if err != nil {
		return nil, err
	}
	sub, err := s.store.FindSubscriberByID(ctx, id)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, herald.Errorf(herald.ENOTFOUND, "This link is not valid. Please use the link from your most recent email.")
	}
	return sub, err
}

// Unsubscribe stops all mail to the subscriber an unsubscribe token names.
// It is idempotent; source ("one-click", "page", "api") goes into the
// activity log. Messages already queued are cancelled when claimed.
func (s *Service) Unsubscribe(ctx context.Context, token, source string) (*Subscriber, error) {
	ctx, cancel := detach(ctx)
	defer cancel()
	id, err := s.signer.verify(token, signedUnsubscribe, s.now())
	if err != nil {
		return nil, err
	}
	var sub *Subscriber
	now := s.now()
	changed := false
	err = s.store.Update(ctx, func(tx Tx) error {
		sub, err = tx.SubscriberByID(id)
		if herald.IsCode(err, herald.ENOTFOUND) {
			return herald.Errorf(herald.ENOTFOUND, "This link is not valid. Please use the link from your most recent email.")
		} else if err != nil {
			return err
		}
		if sub.Status != StatusActive && sub.Status != StatusPending {
			return nil
		}
		changed = true
		sub.Status = StatusUnsubscribed
		sub.UpdatedAt = now
		if err := tx.UpdateSubscriber(sub); err != nil {
			return err
		}
		return tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventUnsubscribe, Detail: clip(source, 40)})
	})
	if err != nil {
		if herald.ErrorCode(err) == herald.EINTERNAL {
			return nil, fmt.Errorf("unsubscribe: %w", err)
		}
		return nil, err
	}
	if changed {
		s.opts.Logger.InfoContext(ctx, "subscriber unsubscribed", "subscriber_id", sub.ID, "source", source)
	}
	return sub, nil
}

// FindSubscribers returns the subscribers matching f.
func (s *Service) FindSubscribers(ctx context.Context, f Filter) ([]*Subscriber, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, herald.Errorf(herald.EINVALID, "status must be one of pending, active, unsubscribed, bounced, complained.")
	}
	return s.store.FindSubscribers(ctx, f)
}

// Ping reports whether the store answers.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
