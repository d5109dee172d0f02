package subscribers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strings"
	"time"

	"herald"
)

// sourceAdmin is the detail of the events an operator's change writes.
const sourceAdmin = "admin"

// NewsletterCount is how many subscribers of one newsletter are in one
// status.
type NewsletterCount struct {
	Newsletter string
	Status     Status
	Count      int
}

// DayActivity counts one UTC day's activity log events by what they
// record.
type DayActivity struct {
	Day           time.Time // midnight UTC
	Signups       int       // signups from a form or the API
	Imports       int       // addresses created by an import
	Confirmations int
	Unsubscribes  int
	Bounces       int
	Complaints    int
}

// AdminStore is what the operator's side needs from a database beyond
// Store.
type AdminStore interface {
	Store
	// CountSubscribers counts subscribers by newsletter and status;
	// combinations with none are absent.
	CountSubscribers(ctx context.Context) ([]NewsletterCount, error)
	// DailyActivity counts activity log events per UTC day from since
	// (inclusive) to until (exclusive), oldest first; days without events
	// are absent. Bounces are status changes to bounced, complaints status
	// changes to complained (and events of kind "bounce" and "complaint").
	DailyActivity(ctx context.Context, since, until time.Time) ([]DayActivity, error)
}

// Admin is the operator's side of subscribers, behind the admin API:
// look-ups, changes an operator may make, streamed exports with filters,
// imports with a dry run, and counts.
type Admin struct {
	svc   *Service
	store AdminStore
}

// NewAdmin returns the operator's side of svc over store (the store svc
// was built with).
func NewAdmin(svc *Service, store AdminStore) *Admin {
	return &Admin{svc: svc, store: store}
}

// Get returns one subscriber, or ENOTFOUND.
func (a *Admin) Get(ctx context.Context, id int64) (*Subscriber, error) {
	sub, err := a.store.FindSubscriberByID(ctx, id)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, herald.Errorf(herald.ENOTFOUND, "There is no subscriber with id %d.", id)
	} else if err != nil {
		return nil, fmt.Errorf("get subscriber %d: %w", id, err)
	}
	return sub, nil
}

// AdminUpdate is an operator's change to a subscriber; a nil field is left
// as it is.
type AdminUpdate struct {
	// Status may be StatusUnsubscribed (stops all mail), or StatusActive
	// for a subscriber who unsubscribed after confirming their address.
	Status *Status
	// Name replaces the name; "" clears it.
	Name *string
	// Newsletters replaces the newsletter choices; it may not be empty
	// (unsubscribe instead).
	Newsletters *[]string
}

// Update applies an operator's change in one transaction, writing one
// activity log event per change, and returns the subscriber as saved.
//
// An operator may unsubscribe a pending or active reader, and bring back a
// reader who unsubscribed, provided they confirmed their address once:
// double opt-in stays the gate to a first subscription, so a pending
// reader cannot be made active here (ECONFLICT), and a bounced or
// complained address stays suppressed (ECONFLICT). Any other status, an
// unknown newsletter, an empty newsletter list or a name NormalizeName
// refuses is EINVALID naming the field; nothing is written then.
// ENOTFOUND for an unknown id.
func (a *Admin) Update(ctx context.Context, id int64, u AdminUpdate) (*Subscriber, error) {
	var (
		name  string
		lists []string
		err   error
	)
	if u.Status != nil && *u.Status != StatusUnsubscribed && *u.Status != StatusActive {
		return nil, herald.Errorf(herald.EINVALID, "status: may be set to unsubscribed, or back to active for a subscriber who had confirmed; got %q", *u.Status)
	}
	if u.Name != nil {
		if name, err = NormalizeName(*u.Name); err != nil {
			return nil, herald.Errorf(herald.EINVALID, "name: %s", herald.ErrorMessage(err))
		}
	}
	if u.Newsletters != nil {
		if len(*u.Newsletters) == 0 {
			return nil, herald.Errorf(herald.EINVALID, "newsletters: name at least one newsletter (to stop all mail, set status to unsubscribed)")
		}
		if lists, err = a.svc.checkNewsletters(*u.Newsletters); err != nil {
			return nil, herald.Errorf(herald.EINVALID, "newsletters: %s", herald.ErrorMessage(err))
		}
	}
	now := a.svc.now()
	var (
		sub    *Subscriber
		events []Event
	)
	err = a.store.Update(ctx, func(tx Tx) error {
		events = events[:0]
		var err error
		if sub, err = tx.SubscriberByID(id); herald.IsCode(err, herald.ENOTFOUND) {
			return herald.Errorf(herald.ENOTFOUND, "There is no subscriber with id %d.", id)
		} else if err != nil {
			return err
		}
		add := func(kind, detail string) {
			events = append(events, Event{SubscriberID: sub.ID, At: now, Kind: kind, Detail: clip(detail, 200)})
		}
		if u.Name != nil && name != sub.Name {
			switch {
			case sub.Name == "":
				add(EventNameChange, "set")
			case name == "":
				add(EventNameChange, "cleared")
			default:
				add(EventNameChange, "changed")
			}
			sub.Name = name
		}
		if u.Newsletters != nil {
			if d := newsletterChanges(sub.Newsletters, lists); d != "" {
				add(EventNewsletters, sourceAdmin+": "+d)
				sub.Newsletters = lists
			}
		}
		if u.Status != nil && *u.Status != sub.Status {
			switch {
			case sub.Status == StatusBounced || sub.Status == StatusComplained:
				return herald.Errorf(herald.ECONFLICT, "status: the address %s, so it stays suppressed; only a new signup confirmed by its owner can bring it back.", sub.Status)
			case *u.Status == StatusUnsubscribed:
				sub.Status = StatusUnsubscribed
				add(EventUnsubscribe, sourceAdmin)
			case sub.ConfirmedAt.IsZero():
				return herald.Errorf(herald.ECONFLICT, "status: this subscriber never confirmed their address, so only the confirmation email can make them active.")
			default: // unsubscribed, and confirmed once
				sub.Status = StatusActive
				add(EventResubscribe, sourceAdmin)
			}
		}
		if len(events) == 0 {
			return nil
		}
		sub.UpdatedAt = now
		if err := tx.UpdateSubscriber(sub); err != nil {
			return err
		}
		for _, e := range events {
			if err := tx.AddEvent(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if herald.ErrorCode(err) == herald.EINTERNAL {
			return nil, fmt.Errorf("update subscriber %d: %w", id, err)
		}
		return nil, err
	}
	if len(events) > 0 {
		a.svc.opts.Logger.InfoContext(ctx, "subscriber changed by an operator", "subscriber_id", sub.ID, "changes", len(events))
	}
	return sub, nil
}

// eachPage is how many subscribers Each reads per query.
const eachPage = 1000

// Each calls fn for every subscriber matching f's Status and Newsletter (and
// Query), ordered by id, in constant memory: it reads pages of eachPage
// rows by id, so a long export holds no read transaction open. f's Limit
// and AfterID are ignored. It stops at fn's first error and returns it.
func (a *Admin) Each(ctx context.Context, f Filter, fn func(*Subscriber) error) error {
	f.AfterID, f.Limit = 0, eachPage
	for {
		page, err := a.svc.FindSubscribers(ctx, f)
		if err != nil {
			return fmt.Errorf("export subscribers: %w", err)
		}
		for _, sub := range page {
			if err := fn(sub); err != nil {
				return err
			}
		}
		if len(page) < eachPage {
			return nil
		}
		f.AfterID = page[len(page)-1].ID
	}
}

// exportHeader is the header of a CSV export: the import's columns first,
// so that an export imports back unchanged.
func exportHeader() []string {
	return []string{"email", "name", "newsletters", "status", "created_at", "confirmed_at"}
}

// ExportCSV streams the subscribers matching f to w as CSV, with the
// columns of Service.Export, and returns how many it wrote.
func (a *Admin) ExportCSV(ctx context.Context, w io.Writer, f Filter) (int, error) {
	cw := csv.NewWriter(w)
	rec := exportHeader()
	if err := cw.Write(rec); err != nil {
		return 0, err
	}
	n := 0
	err := a.Each(ctx, f, func(sub *Subscriber) error {
		rec[0], rec[1], rec[2], rec[3] = sub.Email, defuseCell(sub.Name), strings.Join(sub.Newsletters, " "), string(sub.Status)
		rec[4], rec[5] = formatTime(sub.CreatedAt), formatTime(sub.ConfirmedAt)
		n++
		if err := cw.Write(rec); err != nil {
			return err
		}
		if n%eachPage == 0 {
			// Hand each page on to the client instead of buffering.
			cw.Flush()
			return cw.Error()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	cw.Flush()
	return n, cw.Error()
}

// Counts returns how many subscribers each newsletter has in each status.
func (a *Admin) Counts(ctx context.Context) (map[string]map[Status]int, error) {
	rows, err := a.store.CountSubscribers(ctx)
	if err != nil {
		return nil, fmt.Errorf("count subscribers: %w", err)
	}
	out := make(map[string]map[Status]int)
	for _, r := range rows {
		if out[r.Newsletter] == nil {
			out[r.Newsletter] = make(map[Status]int)
		}
		out[r.Newsletter][r.Status] += r.Count
	}
	return out, nil
}

// MaxActivityDays bounds Activity's window.
const MaxActivityDays = 366

// Activity returns the last days UTC days of activity, today included,
// oldest first, one entry per day (days without events are zeros).
// EINVALID when days is not 1 to MaxActivityDays.
func (a *Admin) Activity(ctx context.Context, days int) ([]DayActivity, error) {
	if days < 1 || days > MaxActivityDays {
		return nil, herald.Errorf(herald.EINVALID, "days: must be a whole number from 1 to %d", MaxActivityDays)
	}
	now := a.svc.now()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	since := today.AddDate(0, 0, -(days - 1))
	rows, err := a.store.DailyActivity(ctx, since, today.AddDate(0, 0, 1))
	if err != nil {
		return nil, fmt.Errorf("daily activity: %w", err)
	}
	out := make([]DayActivity, days)
	for i := range out {
		out[i].Day = since.AddDate(0, 0, i)
	}
	for _, r := range rows {
		// Days are whole UTC days, so the index is exact.
		i := int(r.Day.Sub(since) / (24 * time.Hour))
		if i >= 0 && i < days {
			r.Day = out[i].Day
			out[i] = r
		}
	}
	return out, nil
}

// Import runs Service.Import; with dryRun it checks and reports every row
// exactly as an import would, and writes nothing (see DryRun).
func (a *Admin) Import(ctx context.Context, r io.Reader, opts ImportOptions, dryRun bool, reject func(Rejection), progress func(rows int)) (ImportStats, error) {
	svc := a.svc
	if dryRun {
		svc = a.svc.DryRun()
	}
	return svc.Import(ctx, r, opts, reject, progress)
}

// DryRun returns a copy of the service whose writes are all rolled back:
// an Import through it runs every check an import runs, row by row and
// against the database (known, unsubscribed, bounced and suppressed
// addresses), and reports what it would do, writing nothing and queuing no
// email. Its rows, rejections and created count are the import's. Imports
// write in batches; an address created by an earlier (rolled-back) batch
// of the same dry run is known to later ones by an 8-byte hash only, as a
// subscriber with no name and no newsletters, so a repeat of it further
// down the file counts as updated where the import may count it unchanged.
func (s *Service) DryRun() *Service {
	c := *s
	c.store = &dryRunStore{Store: s.store, seed: maphash.MakeSeed(), created: make(map[uint64]bool)}
	return &c
}

// errDryRun rolls a dry run's transaction back.
var errDryRun = errors.New("dry run: roll back")

// dryRunStore runs every transaction and then rolls it back.
type dryRunStore struct {
	Store
	seed maphash.Seed
	// created holds the hashes of the addresses earlier batches created
	// (and rolled back), true for those created active: a few bytes an
	// address, and never the address.
	created map[uint64]bool
}

// Update runs fn and rolls its transaction back, answering fn's own error
// or nil.
func (d *dryRunStore) Update(ctx context.Context, fn func(tx Tx) error) error {
	var made []createdAddr
	err := d.Store.Update(ctx, func(tx Tx) error {
		made = made[:0]
		dt := &dryRunTx{Tx: tx, store: d, made: &made}
		if err := fn(dt); err != nil {
			return err
		}
		return errDryRun
	})
	if errors.Is(err, errDryRun) {
		for _, m := range made {
			d.created[m.hash] = m.active
		}
		return nil
	}
	return err
}

// createdAddr is an address a dry run's batch created.
type createdAddr struct {
	hash   uint64
	active bool
}

// dryRunTx answers for addresses an earlier batch of the dry run created
// as if they were stored: pending or active as imported, with no name and
// no newsletters, and a negative id that no write reaches.
type dryRunTx struct {
	Tx
	store *dryRunStore
	made  *[]createdAddr
}

func (t *dryRunTx) SubscriberByEmail(email string) (*Subscriber, error) {
	sub, err := t.Tx.SubscriberByEmail(email)
	if !herald.IsCode(err, herald.ENOTFOUND) {
		return sub, err
	}
	if active, ok := t.store.created[maphash.String(t.store.seed, email)]; ok {
		sub := &Subscriber{ID: -1, Email: email, Status: StatusPending}
		if active {
			sub.Status = StatusActive
		}
		return sub, nil
	}
	return nil, err
}

func (t *dryRunTx) CreateSubscriber(s *Subscriber) error {
	if err := t.Tx.CreateSubscriber(s); err != nil {
		return err
	}
	*t.made = append(*t.made, createdAddr{maphash.String(t.store.seed, s.Email), s.Status == StatusActive})
	return nil
}

func (t *dryRunTx) UpdateSubscriber(s *Subscriber) error {
	if s.ID < 0 {
		return nil
	}
	return t.Tx.UpdateSubscriber(s)
}

func (t *dryRunTx) AddEvent(e Event) error {
	if e.SubscriberID < 0 {
		return nil
	}
	return t.Tx.AddEvent(e)
}

// maxHeaderBytes bounds the header line RenameColumns reads.
const maxHeaderBytes = 64 << 10

// ParseColumnMap parses a column mapping such as
// "email:E-mail,name:Full Name,newsletters:Lists": each import column
// (email, name, newsletters) and the file's header that holds it. EINVALID
// naming the problem.
func ParseColumnMap(s string) (map[string]string, error) {
	out := make(map[string]string)
	for pair := range strings.SplitSeq(s, ",") {
		col, header, ok := strings.Cut(pair, ":")
		col = strings.ToLower(strings.TrimSpace(col))
		header = strings.TrimSpace(header)
		known := col == "email" || col == "name" || col == "newsletters"
		switch {
		case !ok || header == "":
			return nil, herald.Errorf(herald.EINVALID, "map: %q is not COLUMN:HEADER, as in email:E-mail,name:Full Name", clip(pair, 60))
		case !known:
			return nil, herald.Errorf(herald.EINVALID, "map: %q is not a column Herald imports (email, name, newsletters)", clip(col, 40))
		case out[col] != "":
			return nil, herald.Errorf(herald.EINVALID, "map: the column %s is mapped twice", col)
		}
		out[col] = header
	}
	return out, nil
}

// RenameColumns returns r with its header line rewritten by a column map
// from ParseColumnMap: the header named for each import column is renamed
// to that column, compared without regard to case or surrounding space;
// the rest of r passes through untouched, as a stream. A header the map
// names but the file lacks is EINVALID.
func RenameColumns(r io.Reader, columns map[string]string) (io.Reader, error) {
	if len(columns) == 0 {
		return r, nil
	}
	br := bufio.NewReaderSize(r, maxHeaderBytes)
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, herald.Errorf(herald.EINVALID, "The header line is longer than %d KiB.", maxHeaderBytes>>10)
	} else if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read the header: %w", err)
	}
	cr := csv.NewReader(bytes.NewReader(line))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, herald.Errorf(herald.EINVALID, "The file is empty: it needs a header line.")
	} else if err != nil {
		return nil, herald.Errorf(herald.EINVALID, "The header line cannot be read: %s.", csvReason(err))
	}
	for col, from := range columns {
		found := false
		for i, h := range header {
			if strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")), from) {
				header[i], found = col, true
			}
		}
		if !found {
			return nil, herald.Errorf(herald.EINVALID, "map: the header has no column %q", clip(from, 60))
		}
	}
	var out bytes.Buffer
	cw := csv.NewWriter(&out)
	if err := cw.Write(header); err != nil {
		return nil, err
	}
	cw.Flush()
	return io.MultiReader(&out, br), nil
}
