package subscribers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"herald"
)

// PrivacyStore is what the privacy side of the Service (the suppression
// list, export, erase, consent export and retention) needs from a database
// beside Store. A Store that also implements PrivacyStore must give
// Store.Update a Tx that implements PrivacyTx. Every method is one
// transaction (or one read snapshot).
type PrivacyStore interface {
	Store
	// FindSubscriberRecords returns every row the database holds about one
	// subscriber, read in one snapshot; ENOTFOUND for an unknown id.
	FindSubscriberRecords(ctx context.Context, id int64) (*Records, error)
	// FindSuppression returns the entry with that hash, or ENOTFOUND.
	FindSuppression(ctx context.Context, hash []byte) (*Suppression, error)
	// FindSuppressions returns up to limit entries (at most the store's page
	// cap) whose hashes sort after after (nil: from the first), in hash
	// order.
	FindSuppressions(ctx context.Context, after []byte, limit int) ([]Suppression, error)
	// EachConsent streams every consent record with its subscriber's
	// address, ordered by subscriber id then consent id, in constant
	// memory; it stops at the first error fn returns and returns it.
	EachConsent(ctx context.Context, fn func(email string, c *Consent) error) error
	// PurgePending deletes, with everything they hold, up to limit
	// subscribers still pending whose last change (UpdatedAt) is before
	// before, and returns the addresses of those it deleted (at most
	// limit), so that copies of their mail kept outside the database can
	// be removed too.
	PurgePending(ctx context.Context, before time.Time, limit int) ([]string, error)
	// AggregateMessages adds up to limit settled messages (sent, failed,
	// bounced or cancelled) last changed before before into the delivery
	// statistics (a count per day, kind and status) and deletes them; it
	// returns how many it deleted.
	AggregateMessages(ctx context.Context, before time.Time, limit int) (int, error)
	// DeleteExpiredTokens deletes up to limit stored tokens that expired
	// before before, and returns how many.
	DeleteExpiredTokens(ctx context.Context, before time.Time, limit int) (int, error)
	// Scrub makes what was deleted unrecoverable from the store's own files
	// as far as the engine can (SQLite: checkpoint the WAL and truncate
	// it). EUNAVAILABLE when it could not finish now; calling it again
	// later is harmless.
	Scrub(ctx context.Context) error
}

// PrivacyTx is the set of privacy operations available inside Store.Update
// on a store that implements PrivacyStore.
type PrivacyTx interface {
	Tx
	// Suppressed reports whether the hash is on the suppression list.
	Suppressed(hash []byte) (bool, error)
	// SuppressionByHash returns the entry with that hash, or ENOTFOUND.
	SuppressionByHash(hash []byte) (*Suppression, error)
	// AddSuppression adds s unless its hash is listed already; it reports
	// whether it added it.
	AddSuppression(s Suppression) (bool, error)
	// DeleteSuppression removes the entry with that hash, or returns
	// ENOTFOUND.
	DeleteSuppression(hash []byte) error
	// EraseSubscriber deletes the subscriber and every row that names them
	// (newsletter choices, consents, activity log, tokens, messages; settled
	// messages are first counted into the delivery statistics). ENOTFOUND
	// for an unknown id.
	EraseSubscriber(id int64) error
	// LatestEvent returns the subscriber's newest activity log event of
	// that kind, or ENOTFOUND.
	LatestEvent(subscriberID int64, kind string) (*Event, error)
}

// Records are the rows a database holds about one subscriber.
type Records struct {
	Subscriber *Subscriber
	Consents   []Consent
	Events     []Event
	Tokens     []Token // their hashes are not exported
	Messages   []Delivery
	// Other holds the subscriber's rows of every other table that has a
	// subscriber_id column, by table, each row as column -> value as
	// stored: a table added later is in the export before anyone writes
	// code for it.
	Other map[string][]map[string]any
}

// Delivery is one outbox row addressed to a subscriber.
type Delivery struct {
	ID        int64
	Kind      string
	IssueID   int64 // 0: not part of a digest issue
	MessageID string
	Status    string // queued, sending, sent, failed, bounced, cancelled
	Attempts  int
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
	SentAt    time.Time // zero until sent
}

// noPrivacy is the error of a privacy operation on a store without them.
func noPrivacy() error {
	return herald.Errorf(herald.EUNAVAILABLE, "This storage engine does not support the privacy operations yet.")
}

// updatePrivacy runs fn in one write transaction of a PrivacyStore.
func (s *Service) updatePrivacy(ctx context.Context, fn func(PrivacyTx) error) error {
	if s.privacy == nil {
		return noPrivacy()
	}
	return s.store.Update(ctx, func(tx Tx) error {
		ptx, ok := tx.(PrivacyTx)
		if !ok {
			return noPrivacy()
		}
		return fn(ptx)
	})
}

// Activity log event kinds of the privacy side.
const (
	EventDataRequest = "data_request" // the reader asked for their data (detail: the channel)
	EventDataExport  = "data_export"  // the export was downloaded (detail: "reader" or "admin")
)

// Reader data requests.
const (
	// DataExportTokenTTL is how long the link in a data export email works.
	DataExportTokenTTL = 7 * 24 * time.Hour
	// DataRequestInterval is the least time between two data export
	// emails to one reader.
	DataRequestInterval = time.Hour
)

// DossierFormat names the layout of a Dossier; it changes when a field is
// removed or changes meaning.
const DossierFormat = "herald.dossier.v1"

// Dossier is everything Herald holds about one subscriber, as their data
// export and the admin API show it: the profile, every consent record,
// the activity log, every message addressed to them, their stored links
// (never the tokens themselves) and whether their address is on the
// suppression list.
type Dossier struct {
	Format      string              `json:"format"`
	ExportedAt  time.Time           `json:"exported_at"`
	Subscriber  DossierProfile      `json:"subscriber"`
	Consents    []DossierConsent    `json:"consents"`
	Activity    []DossierEvent      `json:"activity"`
	Deliveries  []DossierDelivery   `json:"deliveries"`
	Links       []DossierLink       `json:"links"`
	Suppression *DossierSuppression `json:"suppression"`
	// OtherRecords are the subscriber's rows of the other tables that
	// name them (such as the bounce log), by table, as stored.
	OtherRecords map[string][]map[string]any `json:"other_records"`
}

// DossierProfile is the subscriber row. Times that have not happened are
// null.
type DossierProfile struct {
	ID            int64      `json:"id"`
	Email         string     `json:"email"`
	Name          string     `json:"name"`
	Status        string     `json:"status"`
	Newsletters   []string   `json:"newsletters"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	ConfirmedAt   *time.Time `json:"confirmed_at"`
	ConfirmSentAt *time.Time `json:"confirmation_sent_at"`
	PausedUntil   *time.Time `json:"paused_until"`
}

// DossierConsent is one consent record: what the reader was shown and
// chose, when and from where, and their confirmation.
type DossierConsent struct {
	ID          int64      `json:"id"`
	CreatedAt   time.Time  `json:"created_at"`
	IP          string     `json:"ip"`
	UserAgent   string     `json:"user_agent"`
	Source      string     `json:"source"`
	TextVersion string     `json:"consent_text_version"`
	Newsletters []string   `json:"newsletters"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
	ConfirmIP   string     `json:"confirm_ip"`
}

// DossierEvent is one line of the activity log.
type DossierEvent struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// DossierDelivery is one message addressed to the subscriber.
type DossierDelivery struct {
	ID        int64      `json:"id"`
	Kind      string     `json:"kind"`
	IssueID   *int64     `json:"issue_id"`
	MessageID string     `json:"message_id"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	SentAt    *time.Time `json:"sent_at"`
}

// DossierLink is one stored single-use link (a confirmation or data export
// link). The token is not known to Herald: only its hash is kept.
type DossierLink struct {
	Purpose   string     `json:"purpose"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at"`
}

// DossierSuppression says that the subscriber's address is on the
// suppression list, since when and why.
type DossierSuppression struct {
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

// optTime is nil for the zero time.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// orEmpty makes a nil list an empty one, so JSON shows [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ExportSubscriber returns everything Herald holds about one subscriber:
// ENOTFOUND for an unknown id.
func (s *Service) ExportSubscriber(ctx context.Context, id int64) (*Dossier, error) {
	if s.privacy == nil {
		return nil, noPrivacy()
	}
	rec, err := s.privacy.FindSubscriberRecords(ctx, id)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, herald.Errorf(herald.ENOTFOUND, "No subscriber has the id %d.", id)
	} else if err != nil {
		return nil, fmt.Errorf("export subscriber %d: %w", id, err)
	}
	sub := rec.Subscriber
	d := &Dossier{
		Format:     DossierFormat,
		ExportedAt: s.now(),
		Subscriber: DossierProfile{
			ID: sub.ID, Email: sub.Email, Name: sub.Name, Status: string(sub.Status),
			Newsletters: orEmpty(sub.Newsletters),
			CreatedAt:   sub.CreatedAt.UTC(), UpdatedAt: sub.UpdatedAt.UTC(),
			ConfirmedAt: optTime(sub.ConfirmedAt), ConfirmSentAt: optTime(sub.ConfirmSentAt),
			PausedUntil: optTime(sub.PausedUntil),
		},
		Consents:     make([]DossierConsent, 0, len(rec.Consents)),
		Activity:     make([]DossierEvent, 0, len(rec.Events)),
		Deliveries:   make([]DossierDelivery, 0, len(rec.Messages)),
		Links:        make([]DossierLink, 0, len(rec.Tokens)),
		OtherRecords: make(map[string][]map[string]any, len(rec.Other)),
	}
	for table, rows := range rec.Other {
		d.OtherRecords[table] = orEmpty(rows)
	}
	for _, c := range rec.Consents {
		d.Consents = append(d.Consents, DossierConsent{
			ID: c.ID, CreatedAt: c.CreatedAt.UTC(), IP: c.IP, UserAgent: c.UserAgent, Source: c.Source,
			TextVersion: c.TextVersion, Newsletters: orEmpty(c.Newsletters),
			ConfirmedAt: optTime(c.ConfirmedAt), ConfirmIP: c.ConfirmIP,
		})
	}
	for _, e := range rec.Events {
		d.Activity = append(d.Activity, DossierEvent{At: e.At.UTC(), Kind: e.Kind, Detail: e.Detail})
	}
	for _, m := range rec.Messages {
		dd := DossierDelivery{
			ID: m.ID, Kind: m.Kind, MessageID: m.MessageID, Status: m.Status, Attempts: m.Attempts,
			LastError: m.LastError, CreatedAt: m.CreatedAt.UTC(), UpdatedAt: m.UpdatedAt.UTC(), SentAt: optTime(m.SentAt),
		}
		if m.IssueID != 0 {
			issue := m.IssueID
			dd.IssueID = &issue
		}
		d.Deliveries = append(d.Deliveries, dd)
	}
	for _, t := range rec.Tokens {
		d.Links = append(d.Links, DossierLink{Purpose: string(t.Purpose), CreatedAt: t.CreatedAt.UTC(), ExpiresAt: t.ExpiresAt.UTC(), UsedAt: optTime(t.UsedAt)})
	}
	sup, err := s.privacy.FindSuppression(ctx, s.addressHash(sub.Email))
	switch {
	case err == nil:
		d.Suppression = &DossierSuppression{Reason: sup.Reason, CreatedAt: sup.CreatedAt.UTC()}
	case !herald.IsCode(err, herald.ENOTFOUND):
		return nil, fmt.Errorf("export subscriber %d: %w", id, err)
	}
	return d, nil
}

// forgetCopiesTimeout bounds the removal of an erased reader's mail copies,
// and of one retention batch's purged signups'.
const forgetCopiesTimeout = 2 * time.Minute

// Erase deletes a subscriber and every record that holds their personal
// data, in one transaction, and puts the keyed hash of their address on
// the suppression list (ReasonErased), so that neither an import nor a
// signup can silently bring them back. source ("admin", "reader") goes
// into the log. ENOTFOUND for an unknown id.
//
// Afterwards the store is scrubbed (PrivacyStore.Scrub), so that the
// deleted rows do not linger in its files either; a scrub that cannot
// finish now (a long read holds the WAL) is logged, and the retention
// loop's next pass finishes it. Then, with Options.MailCopies set, the
// copies of the mail sent to the reader are removed; a failure there is
// logged (the erase itself stands) and not retried.
func (s *Service) Erase(ctx context.Context, id int64, source string) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	now := s.now()
	var email string
	err := s.updatePrivacy(ctx, func(tx PrivacyTx) error {
		sub, err := tx.SubscriberByID(id)
		if err != nil {
			return err
		}
		email = sub.Email
		if _, err := tx.AddSuppression(Suppression{Hash: s.addressHash(sub.Email), Reason: ReasonErased, CreatedAt: now}); err != nil {
			return err
		}
		return tx.EraseSubscriber(id)
	})
	if herald.IsCode(err, herald.ENOTFOUND) {
		return herald.Errorf(herald.ENOTFOUND, "No subscriber has the id %d.", id)
	} else if err != nil {
		return fmt.Errorf("erase subscriber %d: %w", id, err)
	}
	s.opts.Logger.InfoContext(ctx, "subscriber erased", "subscriber_id", id, "source", clip(source, 40))
	if err := s.privacy.Scrub(ctx); err != nil {
		s.opts.Logger.WarnContext(ctx, "scrub after erase did not finish; the retention loop retries", "subscriber_id", id, "error", err)
	}
	if s.opts.MailCopies != nil {
		// Its own bound, longer than a write's: the copies may be a large
		// directory to read through.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), forgetCopiesTimeout)
		defer ccancel()
		// Every copy: the address is suppressed, so nothing new was
		// written to it since.
		n, err := s.opts.MailCopies.ForgetRecipients(cctx, []string{email}, time.Time{})
		if err != nil {
			s.opts.Logger.ErrorContext(ctx, "removing the erased reader's mail copies did not finish", "subscriber_id", id, "removed", n, "error", err)
		} else if n > 0 {
			s.opts.Logger.InfoContext(ctx, "erased reader's mail copies removed", "subscriber_id", id, "removed", n)
		}
	}
	return nil
}

// EraseByToken erases the reader a preferences token names, at their own
// request from their preference page: as Erase. ENOTFOUND for a forged
// token or a reader already erased, EGONE for an expired token.
func (s *Service) EraseByToken(ctx context.Context, token string) error {
	id, err := s.signer.verify(token, signedPreferences, s.now())
	if err != nil {
		return err
	}
	if err := s.Erase(ctx, id, "reader"); herald.IsCode(err, herald.ENOTFOUND) {
		return notValidLink()
	} else if err != nil {
		return err
	}
	return nil
}

// RequestDataExport queues, for the reader a preferences token names, an
// email with a link to download everything Herald holds about them. One
// request per reader per DataRequestInterval: a second one inside it is
// ERATELIMIT. A reader whose address bounced or is on the suppression list
// cannot be emailed: ECONFLICT. ENOTFOUND for a forged token, EGONE for an
// expired one.
func (s *Service) RequestDataExport(ctx context.Context, token string) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	now := s.now()
	id, err := s.signer.verify(token, signedPreferences, now)
	if err != nil {
		return err
	}
	err = s.updatePrivacy(ctx, func(tx PrivacyTx) error {
		sub, err := tx.SubscriberByID(id)
		if herald.IsCode(err, herald.ENOTFOUND) {
			return notValidLink()
		} else if err != nil {
			return err
		}
		suppressed, err := tx.Suppressed(s.addressHash(sub.Email))
		if err != nil {
			return err
		}
		if suppressed || sub.Status == StatusBounced {
			return herald.Errorf(herald.ECONFLICT, "We cannot send email to this address any more, so we cannot send you your data by email. Please write to us instead.")
		}
		last, err := tx.LatestEvent(sub.ID, EventDataRequest)
		switch {
		case err == nil && now.Sub(last.At) < DataRequestInterval:
			return herald.Errorf(herald.ERATELIMIT, "You asked for your data less than an hour ago: the email is on its way. Please check your inbox, or ask again after %s UTC.", last.At.Add(DataRequestInterval).UTC().Format("15:04"))
		case err != nil && !herald.IsCode(err, herald.ENOTFOUND):
			return err
		}
		if err := tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventDataRequest, Detail: sourcePreferences}); err != nil {
			return err
		}
		return s.queue(tx, sub, KindDataExport, now)
	})
	if err != nil {
		if herald.ErrorCode(err) == herald.EINTERNAL {
			return fmt.Errorf("request data export: %w", err)
		}
		return err
	}
	s.opts.Logger.InfoContext(ctx, "data export requested", "subscriber_id", id)
	return nil
}

// IssueDataExportToken creates a stored data export token for a subscriber
// (good for DataExportTokenTTL, one download) and returns it; only its hash
// is kept. The delivery engine calls it when it renders a data export
// email, so no raw token rests in the outbox.
func (s *Service) IssueDataExportToken(ctx context.Context, subscriberID int64) (string, error) {
	raw, hash, err := newStoredToken()
	if err != nil {
		return "", err
	}
	now := s.now()
	err = s.store.Update(ctx, func(tx Tx) error {
		return tx.CreateToken(Token{Hash: hash, SubscriberID: subscriberID, Purpose: PurposeDataExport, CreatedAt: now, ExpiresAt: now.Add(DataExportTokenTTL)})
	})
	if err != nil {
		return "", fmt.Errorf("issue data export token for subscriber %d: %w", subscriberID, err)
	}
	return raw, nil
}

// dataExportable checks a data export token, read through l: ENOTFOUND
// for an unknown, forged or malformed token (or a reader since erased),
// EGONE for one used or expired.
func (s *Service) dataExportable(l tokenLookup, token string) (*Subscriber, *Token, error) {
	notValid := herald.Errorf(herald.ENOTFOUND, "This download link is not valid. Please copy the whole link from the email, or ask for your data again on your preference page.")
	if !wellFormedStored(token) {
		return nil, nil, notValid
	}
	t, err := l.TokenByHash(hashToken(token))
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, nil, notValid
	} else if err != nil {
		return nil, nil, err
	}
	if t.Purpose != PurposeDataExport {
		return nil, nil, notValid
	}
	sub, err := l.SubscriberByID(t.SubscriberID)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, nil, notValid
	} else if err != nil {
		return nil, nil, err
	}
	switch {
	case !t.UsedAt.IsZero():
		return sub, t, herald.Errorf(herald.EGONE, "This download link has been used already: each link works once. Please ask for your data again on your preference page.")
	case !s.now().Before(t.ExpiresAt):
		return sub, t, herald.Errorf(herald.EGONE, "This download link has expired. Please ask for your data again on your preference page.")
	}
	return sub, t, nil
}

// CheckDataExportToken looks a data export token up without changing
// anything: ENOTFOUND for an unknown or forged token, EGONE for one used or
// expired. Like CheckConfirmToken, it takes no write transaction.
func (s *Service) CheckDataExportToken(ctx context.Context, token string) (*Subscriber, error) {
	sub, _, err := s.dataExportable(readLookup{ctx, s.store}, token)
	return sub, err
}

// DownloadDataExport spends a data export token (it works once) and
// returns the reader's Dossier, which then records the download.
// ENOTFOUND and EGONE as CheckDataExportToken.
func (s *Service) DownloadDataExport(ctx context.Context, token string) (*Dossier, error) {
	now := s.now()
	var id int64
	err := s.store.Update(ctx, func(tx Tx) error {
		sub, t, err := s.dataExportable(tx, token)
		if err != nil {
			return err
		}
		id = sub.ID
		if err := tx.UseToken(t.Hash, now); err != nil {
			return err
		}
		return tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventDataExport, Detail: "reader"})
	})
	if err != nil {
		if herald.ErrorCode(err) == herald.EINTERNAL {
			return nil, fmt.Errorf("download data export: %w", err)
		}
		return nil, err
	}
	s.opts.Logger.InfoContext(ctx, "data export downloaded", "subscriber_id", id)
	return s.ExportSubscriber(ctx, id)
}

// ExportConsents streams every consent record to w as CSV with the columns
// subscriber_id, email, created_at, ip, user_agent, source, text_version,
// newsletters, confirmed_at, confirm_ip, and returns how many it wrote.
// Cells a spreadsheet would run as formulas are defused as in Export.
func (s *Service) ExportConsents(ctx context.Context, w io.Writer) (int, error) {
	if s.privacy == nil {
		return 0, noPrivacy()
	}
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"subscriber_id", "email", "created_at", "ip", "user_agent", "source", "text_version", "newsletters", "confirmed_at", "confirm_ip"}); err != nil {
		return 0, err
	}
	n := 0
	rec := make([]string, 10)
	err := s.privacy.EachConsent(ctx, func(email string, c *Consent) error {
		rec[0], rec[1], rec[2] = strconv.FormatInt(c.SubscriberID, 10), email, formatTime(c.CreatedAt)
		rec[3], rec[4], rec[5] = defuseCell(c.IP), defuseCell(c.UserAgent), defuseCell(c.Source)
		rec[6], rec[7] = defuseCell(c.TextVersion), strings.Join(c.Newsletters, " ")
		rec[8], rec[9] = formatTime(c.ConfirmedAt), defuseCell(c.ConfirmIP)
		n++
		return cw.Write(rec)
	})
	if err != nil {
		return n, fmt.Errorf("export consents: %w", err)
	}
	cw.Flush()
	return n, cw.Error()
}

// IPMode says how much of a reader's IP address a consent record keeps.
type IPMode string

// The IP modes of Options.IPMode (privacy.ip_mode).
const (
	// IPFull keeps the address as the request came from.
	IPFull IPMode = "full"
	// IPTruncate keeps the network: an IPv4 address to its /24, an IPv6
	// address to its /48. It is the default.
	IPTruncate IPMode = "truncate"
	// IPHash keeps a keyed hash: two records from one address can be
	// matched, but the address cannot be read back.
	IPHash IPMode = "hash"
)

// Valid reports whether m is one of the known modes.
func (m IPMode) Valid() bool {
	switch m {
	case IPFull, IPTruncate, IPHash:
		return true
	}
	return false
}

// ipKeyName is the secret the IPHash mode is keyed with.
const ipKeyName = "consent_ip_key"

// consentIP is what a consent record keeps of a client IP, under the
// configured mode, at most 64 bytes. Something that is not an IP address is
// kept in full mode only (clipped), hashed in hash mode, and dropped in
// truncate mode, where it could be anything.
func (s *Service) consentIP(ip string) string {
	ip = strings.TrimSpace(ip)
	if ip == "" {
		return ""
	}
	switch s.opts.IPMode {
	case IPFull:
		return clip(ip, 64)
	case IPHash:
		if a, err := netip.ParseAddr(ip); err == nil {
			ip = a.Unmap().WithZone("").String()
		}
		m := hmac.New(sha256.New, s.ipKey)
		m.Write([]byte(ip))
		return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)[:16])
	default:
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return ""
		}
		a = a.Unmap().WithZone("")
		bits := 48
		if a.Is4() {
			bits = 24
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return ""
		}
		return p.Addr().String()
	}
}
