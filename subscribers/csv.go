package subscribers

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"herald"
)

// ImportOptions control an import.
type ImportOptions struct {
	// Status is StatusPending (the default: each new address is sent a
	// confirmation) or StatusActive (the operator asserts that consent was
	// already given elsewhere; no email is sent).
	Status Status
	// Source is recorded on each consent, e.g. "import:members.csv".
	Source string
	// BatchSize is how many rows go in one transaction (default 1000).
	BatchSize int
}

// Rejection is one CSV row that was not imported, and why.
type Rejection struct {
	Line   int
	Email  string // as typed, for the operator's report; never logged
	Reason string
}

// ImportStats counts what an import did.
type ImportStats struct {
	Rows      int // data rows read
	Created   int
	Updated   int
	Unchanged int
	Rejected  int
	// IgnoredColumns are header columns Herald does not know.
	IgnoredColumns []string
}

// maxRecordBytes bounds one CSV record: anything longer is not a subscriber.
const maxRecordBytes = 64 << 10

type importRow struct {
	line        int
	email, name string
	newsletters []string
	hasLists    bool
}

// Import streams subscribers from CSV with a header naming the columns
// email (required), name and newsletters (ids separated by spaces), in any
// order. Rows go to the store in batches, one transaction each, so memory
// stays flat whatever the file's length. Each bad row is passed to reject
// and skipped; the good ones are imported. Addresses that unsubscribed,
// bounced or complained, and addresses on the suppression list, are never
// re-added. progress, when set, is called after each batch with the
// number of rows read so far.
func (s *Service) Import(ctx context.Context, r io.Reader, opts ImportOptions, reject func(Rejection), progress func(rows int)) (ImportStats, error) {
	var st ImportStats
	if opts.Status == "" {
		opts.Status = StatusPending
	}
	if opts.Status != StatusPending && opts.Status != StatusActive {
		return st, herald.Errorf(herald.EINVALID, "status: must be pending or active, got %q", opts.Status)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.Source == "" {
		opts.Source = "import"
	}
	if reject == nil {
		reject = func(Rejection) {}
	}
	rejectf := func(line int, email, format string, args ...any) {
		st.Rejected++
		reject(Rejection{Line: line, Email: email, Reason: fmt.Sprintf(format, args...)})
	}

	cr := csv.NewReader(newLineLimiter(r, maxRecordBytes))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return st, herald.Errorf(herald.EINVALID, "The file is empty: it needs a header line such as email,name,newsletters.")
	} else if err != nil {
		return st, herald.Errorf(herald.EINVALID, "The header line cannot be read: %s.", csvReason(err))
	}
	cols := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		switch h {
		case "email", "name", "newsletters":
			if _, dup := cols[h]; dup {
				return st, herald.Errorf(herald.EINVALID, "The header names the column %q twice.", h)
			}
			cols[h] = i
		default:
			st.IgnoredColumns = append(st.IgnoredColumns, clip(h, 40))
		}
	}
	if _, ok := cols["email"]; !ok {
		return st, herald.Errorf(herald.EINVALID, "The header has no email column (expected email,name,newsletters).")
	}

	batch := make([]importRow, 0, opts.BatchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.importBatch(ctx, batch, opts, &st, rejectf); err != nil {
			return err
		}
		batch = batch[:0]
		if progress != nil {
			progress(st.Rows)
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return st, fmt.Errorf("read CSV: %w", err)
			}
			st.Rows++
			rejectf(pe.StartLine, "", "%s", csvReason(err))
			continue
		}
		// After a parse error the record has no fields: FieldPos would
		// panic, so the line is asked for only now.
		line, _ := cr.FieldPos(0)
		st.Rows++
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			st.Rows-- // a blank line is not a row
			continue
		}
		row, ok := parseImportRow(rec, cols, line, s, rejectf)
		if !ok {
			continue
		}
		batch = append(batch, row)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	s.analyzeAfterImport(ctx, st)
	return st, nil
}

// AnalyzeAfter is how many subscribers an import must create or change
// before the store is asked to refresh its planner statistics.
const AnalyzeAfter = 1000

// Analyzer is implemented by a Store whose query planner needs fresh
// statistics after a bulk change (PostgreSQL). Without them, the plans of
// the queries that page through a newsletter's readers are chosen for the
// empty tables the import started from, and building the next issue can
// take minutes instead of milliseconds; autovacuum would get there, but
// only later, or never where it is turned off.
type Analyzer interface {
	AnalyzeSubscribers(ctx context.Context) error
}

// analyzeAfterImport refreshes the store's statistics after an import that
// created or changed at least AnalyzeAfter subscribers. A dry run's store
// does not implement Analyzer. A failure is logged, not returned: the
// import itself is done.
func (s *Service) analyzeAfterImport(ctx context.Context, st ImportStats) {
	a, ok := s.store.(Analyzer)
	if !ok || st.Created+st.Updated < AnalyzeAfter {
		return
	}
	if err := a.AnalyzeSubscribers(ctx); err != nil {
		s.opts.Logger.WarnContext(ctx, "refresh planner statistics after an import", "error", err.Error())
	}
}

func parseImportRow(rec []string, cols map[string]int, line int, s *Service, rejectf func(int, string, string, ...any)) (importRow, bool) {
	field := func(name string) string {
		if i, ok := cols[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	for _, f := range rec {
		if strings.IndexByte(f, 0) >= 0 {
			rejectf(line, "", "the line is longer than %d KiB", maxRecordBytes>>10)
			return importRow{}, false
		}
		if !utf8.ValidString(f) {
			rejectf(line, "", "the row is not valid UTF-8 (save the file as UTF-8)")
			return importRow{}, false
		}
	}
	if i := cols["email"]; i >= len(rec) {
		rejectf(line, "", "the row has %d fields; the email column is field %d", len(rec), i+1)
		return importRow{}, false
	}
	raw := field("email")
	email, err := NormalizeAddress(raw)
	if err != nil {
		rejectf(line, raw, "%s", herald.ErrorMessage(err))
		return importRow{}, false
	}
	name, err := NormalizeName(undefuseCell(field("name")))
	if err != nil {
		rejectf(line, raw, "%s", herald.ErrorMessage(err))
		return importRow{}, false
	}
	row := importRow{line: line, email: email, name: name}
	if lists := strings.Fields(strings.ReplaceAll(field("newsletters"), ",", " ")); len(lists) > 0 {
		checked, err := s.checkNewsletters(lists)
		if err != nil {
			rejectf(line, raw, "%s", herald.ErrorMessage(err))
			return importRow{}, false
		}
		row.newsletters, row.hasLists = checked, true
	} else {
		row.newsletters, _ = s.checkNewsletters(nil)
	}
	return row, true
}

// importBatch writes one batch in one transaction.
func (s *Service) importBatch(ctx context.Context, batch []importRow, opts ImportOptions, st *ImportStats, rejectf func(int, string, string, ...any)) error {
	now := s.now()
	type outcome struct {
		created, updated, unchanged int
		rejected                    []Rejection
	}
	var out outcome
	err := s.store.Update(ctx, func(tx Tx) error {
		out = outcome{}
		for _, row := range batch {
			if suppressed, err := s.suppressedIn(ctx, tx, row.email); err != nil {
				return err
			} else if suppressed {
				out.rejected = append(out.rejected, Rejection{Line: row.line, Email: row.email, Reason: "the address is on the suppression list"})
				continue
			}
			sub, err := tx.SubscriberByEmail(row.email)
			if herald.IsCode(err, herald.ENOTFOUND) {
				sub = &Subscriber{Email: row.email, Name: row.name, Status: opts.Status, Newsletters: row.newsletters, CreatedAt: now, UpdatedAt: now}
				if opts.Status == StatusActive {
					sub.ConfirmedAt = now
				} else {
					sub.ConfirmSentAt = now
				}
				if err := tx.CreateSubscriber(sub); err != nil {
					return err
				}
				c := &Consent{SubscriberID: sub.ID, CreatedAt: now, Source: clip(opts.Source, 1024), TextVersion: s.opts.ConsentVersion, Newsletters: row.newsletters}
				if opts.Status == StatusActive {
					c.TextVersion = "asserted-by-operator"
					c.ConfirmedAt = now
				}
				if err := tx.AddConsent(c); err != nil {
					return err
				}
				if err := tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventImport, Detail: string(opts.Status)}); err != nil {
					return err
				}
				if opts.Status == StatusPending {
					if err := s.queue(tx, sub, KindConfirmation, now); err != nil {
						return err
					}
				}
				out.created++
				continue
			} else if err != nil {
				return err
			}
			switch sub.Status {
			case StatusUnsubscribed, StatusBounced, StatusComplained:
				out.rejected = append(out.rejected, Rejection{Line: row.line, Email: row.email, Reason: fmt.Sprintf("the address is %s and is not re-added by an import", sub.Status)})
				continue
			}
			changed := false
			if row.name != "" && row.name != sub.Name {
				sub.Name, changed = row.name, true
			}
			if row.hasLists && !slicesEqual(row.newsletters, sub.Newsletters) {
				sub.Newsletters, changed = row.newsletters, true
			}
			if sub.Status == StatusPending && opts.Status == StatusActive {
				sub.Status, sub.ConfirmedAt, changed = StatusActive, now, true
				if err := tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventImport, Detail: "activated"}); err != nil {
					return err
				}
			}
			if !changed {
				out.unchanged++
				continue
			}
			sub.UpdatedAt = now
			if err := tx.UpdateSubscriber(sub); err != nil {
				return err
			}
			out.updated++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import rows %d-%d: %w", batch[0].line, batch[len(batch)-1].line, err)
	}
	st.Created += out.created
	st.Updated += out.updated
	st.Unchanged += out.unchanged
	for _, r := range out.rejected {
		rejectf(r.Line, r.Email, "%s", r.Reason)
	}
	return nil
}

// Export streams every subscriber to w as CSV with the columns
// email,name,newsletters,status,created_at,confirmed_at and returns how many
// it wrote.
func (s *Service) Export(ctx context.Context, w io.Writer) (int, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"email", "name", "newsletters", "status", "created_at", "confirmed_at"}); err != nil {
		return 0, err
	}
	n := 0
	rec := make([]string, 6)
	err := s.store.EachSubscriber(ctx, func(sub *Subscriber) error {
		rec[0], rec[1], rec[2], rec[3] = sub.Email, defuseCell(sub.Name), strings.Join(sub.Newsletters, " "), string(sub.Status)
		rec[4], rec[5] = formatTime(sub.CreatedAt), formatTime(sub.ConfirmedAt)
		n++
		return cw.Write(rec)
	})
	if err != nil {
		return n, fmt.Errorf("export subscribers: %w", err)
	}
	cw.Flush()
	return n, cw.Error()
}

// defuseCell keeps a spreadsheet from running a cell as a formula: names come
// from a public form, and "=HYPERLINK(...)" typed there must reach the
// operator's spreadsheet as text. A leading quote is what spreadsheets take
// as "text follows"; Import strips it again (undefuseCell).
func defuseCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// undefuseCell undoes defuseCell, so an export re-imports unchanged.
func undefuseCell(s string) string {
	if len(s) > 1 && s[0] == '\'' && strings.ContainsRune("=+-@\t\r", rune(s[1])) {
		return s[1:]
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func csvReason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, csv.ErrQuote), errors.Is(pe.Err, csv.ErrBareQuote):
			return "the quoting is broken (a \" inside a field must be doubled)"
		default:
			return "the line cannot be read as CSV"
		}
	}
	return "the line cannot be read as CSV"
}

// tooLongMarker replaces a physical line over maxRecordBytes. A NUL cannot
// appear in a valid row, so a field containing it marks the cut line.
var tooLongMarker = []byte("\x00\n")

// lineLimiter passes a CSV stream through whole lines at a time, replacing
// any line longer than its buffer with tooLongMarker, so one runaway line
// (a 10 MB blob, a file that is not CSV) cannot hold the file in memory.
type lineLimiter struct {
	r   *bufio.Reader
	buf []byte
}

func newLineLimiter(r io.Reader, max int) *lineLimiter {
	return &lineLimiter{r: bufio.NewReaderSize(r, max)}
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	for len(l.buf) == 0 {
		line, err := l.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = l.r.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return 0, err
			}
			l.buf = tooLongMarker
			break
		}
		if len(line) > 0 {
			l.buf = line // valid until the next ReadSlice, which waits for buf to drain
			break
		}
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}
