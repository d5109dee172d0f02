package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"herald"
	"herald/articles"
	"herald/delivery"
	"herald/digest"
	"herald/mailer"
	"herald/store/postgres"
	"herald/store/sqlite"
	"herald/subscribers"
)

// database is what the commands need from a storage engine. Both engines
// satisfy it; only openDatabase knows which one runs.
type database interface {
	subscribers.Store
	delivery.Store
	articles.Store
	digest.Store
	// Migrate applies the migrations the database lacks.
	Migrate(ctx context.Context) error
	// MigrationsPending counts the migrations the database lacks.
	MigrationsPending(ctx context.Context) (int, error)
	// CountMessages counts the outbox's messages by status, for the
	// herald_queue_depth gauge.
	CountMessages(ctx context.Context) (map[string]int, error)
	Close() error
}

// openDatabase opens the engine database.driver names.
func openDatabase(ctx context.Context, cfg *Config) (database, error) {
	switch cfg.Database.Driver {
	case "sqlite":
		db, err := sqlite.Open(ctx, cfg.Database.DSN)
		if err != nil {
			return nil, err
		}
		return db, nil
	case "postgres":
		db, err := postgres.Open(ctx, cfg.Database.DSN,
			postgres.WithMaxConns(int32(cfg.Database.MaxConns)),
			postgres.WithMinConns(int32(cfg.Database.MinConns)),
			postgres.WithMaxConnLifetime(cfg.Database.MaxConnLifetime))
		if err != nil {
			return nil, err
		}
		return db, nil
	default:
		return nil, fmt.Errorf("database.driver: unknown engine %q", cfg.Database.Driver)
	}
}

// schedulerLock names the advisory lock that elects the one instance on a
// PostgreSQL database whose scheduler builds issues.
const schedulerLock = "herald-scheduler"

// schedulerLeader returns the digest scheduler's leader election: on
// PostgreSQL, where several instances may share the database, the instance
// holding the scheduler's advisory lock leads, keeps the lock from pass to
// pass, and loses it with its session when it dies; the others try again at
// each pass. SQLite has one instance: nil, always lead.
func schedulerLeader(db database) func(ctx context.Context) (release func(), ok bool, err error) {
	if pg, ok := db.(*postgres.DB); ok {
		return pg.Leadership(schedulerLock).Lead
	}
	return nil
}

// migrateDatabase applies pending migrations and returns how many there were.
func migrateDatabase(ctx context.Context, db database, logger *slog.Logger) (int, error) {
	pending, err := db.MigrationsPending(ctx)
	if err != nil {
		return 0, err
	}
	if pending == 0 {
		return 0, nil
	}
	if err := db.Migrate(ctx); err != nil {
		return 0, err
	}
	logger.Info("database migrated", "applied", pending)
	return pending, nil
}

// openMigrated opens the database and brings its schema up to date, as every
// command that reads or writes data does first.
func openMigrated(ctx context.Context, cfg *Config, logger *slog.Logger) (database, error) {
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := migrateDatabase(ctx, db, logger); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// newDigests builds the digest service over the configured newsletters.
// The database is both its store and its article source. queued, if not
// nil, is called each time an issue's build has committed a batch of
// messages (digest.Options.Queued).
func newDigests(cfg *Config, db database, logger *slog.Logger, queued func()) (*digest.Service, error) {
	nls, err := cfg.DigestNewsletters()
	if err != nil {
		return nil, err
	}
	return digest.NewService(db, db, nls, digest.Options{
		MessageIDDomain: addressDomain(cfg.FromAddress().Address),
		Logger:          logger.With("component", "digest"),
		BatchSize:       cfg.Digest.BatchSize,
		Queued:          queued,
	})
}

// engineWaker wakes the delivery engine, once there is one, when an issue's
// build has queued messages: the digest service is made before the engine
// (whose renderer needs it), so it is given w.wake and the engine is set
// later. Without it the engine found a new issue's messages at its next
// poll, up to a second after the first of them was queued.
type engineWaker struct {
	e atomic.Pointer[delivery.Engine]
}

func (w *engineWaker) set(e *delivery.Engine) { w.e.Store(e) }

func (w *engineWaker) wake() {
	if e := w.e.Load(); e != nil {
		e.Wake()
	}
}

// newSubscribers builds the subscribers service from the configuration.
// With the outbox transport, erasing a reader also removes their .eml files.
func newSubscribers(ctx context.Context, cfg *Config, db database, logger *slog.Logger) (*subscribers.Service, error) {
	var copies subscribers.MailCopies
	if c := mailCopiesOf(cfg); c != nil {
		copies = c // not a typed nil: no copies means none to remove
	}
	return subscribers.NewService(ctx, db, subscribers.Options{
		Newsletters:         cfg.NewsletterIDs(),
		MessageIDDomain:     addressDomain(cfg.FromAddress().Address),
		ConsentVersion:      cfg.Site.ConsentVersion,
		IPMode:              subscribers.IPMode(cfg.Privacy.IPMode),
		SoftBounceThreshold: cfg.Bounces.SoftThreshold,
		SoftBounceWindow:    cfg.Bounces.SoftWindow,
		MailCopies:          copies,
		Logger:              logger,
	})
}

// parseAddress returns the bare address of a validated address field.
func parseAddress(s string) string {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return s
	}
	return a.Address
}

// hostOf returns the host name of a URL, or "".
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// addressDomain returns the part of an address after its last "@".
func addressDomain(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[i+1:]
		}
	}
	return ""
}

// renderer turns claimed outbox jobs into emails: it looks the reader up,
// mints the links the email carries and hands the result to the composer. It
// implements delivery.Renderer.
type renderer struct {
	subs        *subscribers.Service
	store       subscribers.Store
	composer    *mailer.Composer
	baseURL     string
	newsletters map[string]mailer.NewsletterInfo
	// digests loads editions for digest messages; nil when this process
	// renders no digests.
	digests  digestSource
	editions *editionCache
	zones    map[string]*time.Location // newsletter id -> its time zone
	// feedback adds the VERP return path and the complaint feedback
	// headers; nil when mail.bounce_domain and mail.cfbl_address are unset.
	feedback *feedbackWiring
}

var _ delivery.BatchPreparer = (*renderer)(nil)

// digestSource is what the renderer needs of the digest service.
type digestSource interface {
	// EditionArticles returns an edition and its articles in order;
	// ENOTFOUND for an unknown edition.
	EditionArticles(ctx context.Context, editionID int64) (*digest.Edition, []*articles.Article, error)
	// Issue returns one issue, or ENOTFOUND.
	Issue(ctx context.Context, id int64) (*digest.Issue, error)
}

// editionCacheSize is how many prepared editions the renderer keeps: an
// issue has a handful, and workers go through one issue at a time.
const editionCacheSize = 32

// newRenderer builds the renderer from the configuration. digests may be nil
// when the process sends no digests.
func newRenderer(cfg *Config, subs *subscribers.Service, store subscribers.Store, composer *mailer.Composer, digests digestSource) *renderer {
	nls := make(map[string]mailer.NewsletterInfo, len(cfg.Newsletters))
	for _, n := range cfg.Newsletters {
		nls[n.ID] = mailer.NewsletterInfo{
			ID:          n.ID,
			Name:        n.Name,
			Description: n.Description,
			Frequency:   describeSchedule(n.Schedule, n.Timezone),
		}
	}
	zones := make(map[string]*time.Location, len(cfg.Newsletters))
	for _, n := range cfg.Newsletters {
		loc, err := time.LoadLocation(n.Timezone)
		if err != nil { // validated with the configuration
			loc = time.UTC
		}
		zones[n.ID] = loc
	}
	return &renderer{subs: subs, store: store, composer: composer, baseURL: cfg.HTTP.BaseURL, newsletters: nls,
		digests: digests, editions: newEditionCache(editionCacheSize), zones: zones, feedback: newFeedbackWiring(cfg, store)}
}

// batchChecks is what PrepareBatch learnt about one job (Job.Prepared).
type batchChecks struct {
	suppressed bool // the address is on the suppression list
}

// PrepareBatch checks the addresses of a claimed batch against the
// suppression list in one query, so that Render need not look up each. An
// address suppressed after this check and before its message is sent still
// gets it, as one suppressed while its message was on the wire would.
func (r *renderer) PrepareBatch(ctx context.Context, jobs []delivery.Job) error {
	emails := make([]string, len(jobs))
	for i := range jobs {
		emails[i] = jobs[i].Email
	}
	suppressed, err := r.subs.SuppressedAmong(ctx, emails)
	if err != nil {
		return err
	}
	for i := range jobs {
		jobs[i].Prepared = batchChecks{suppressed: suppressed[i]}
	}
	return nil
}

// suppressed reports whether the job's address is on the suppression list,
// from PrepareBatch's check when there was one.
func (r *renderer) suppressed(ctx context.Context, job delivery.Job, email string) (bool, error) {
	if c, ok := job.Prepared.(batchChecks); ok && email == job.Email {
		return c.suppressed, nil
	}
	return r.subs.IsSuppressed(ctx, email)
}

// Render composes job's email. A confirmation for a reader who is neither
// pending nor unsubscribed, a data export for a reader whose address
// bounced, any other email for a reader who is not active, any email to an
// address on the suppression list and any email to a reader who has been
// erased are cancelled (delivery.ErrCancel).
//
// A digest is rendered from what the claim read with the job (the reader's
// address, name, status, pause and newsletters) and the batch's suppression
// check, without a query of its own; other kinds read the reader again.
func (r *renderer) Render(ctx context.Context, job delivery.Job) (*mailer.Email, error) {
	if job.Kind == digest.KindDigest {
		if job.SubscriberStatus == "" {
			return nil, fmt.Errorf("subscriber %d no longer exists: %w", job.SubscriberID, delivery.ErrCancel)
		}
		if suppressed, err := r.suppressed(ctx, job, job.Email); err != nil {
			return nil, fmt.Errorf("render %s for subscriber %d: %w", job.Kind, job.SubscriberID, err)
		} else if suppressed {
			return nil, fmt.Errorf("%s for an address on the suppression list: %w", job.Kind, delivery.ErrCancel)
		}
		e, err := r.renderDigest(ctx, job)
		return r.feedback.finish(ctx, job, e, err)
	}
	sub, err := r.store.FindSubscriberByID(ctx, job.SubscriberID)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, fmt.Errorf("subscriber %d no longer exists: %w", job.SubscriberID, delivery.ErrCancel)
	} else if err != nil {
		return nil, fmt.Errorf("render %s for subscriber %d: %w", job.Kind, job.SubscriberID, err)
	}
	if suppressed, err := r.suppressed(ctx, job, sub.Email); err != nil {
		return nil, fmt.Errorf("render %s for subscriber %d: %w", job.Kind, job.SubscriberID, err)
	} else if suppressed {
		return nil, fmt.Errorf("%s for an address on the suppression list: %w", job.Kind, delivery.ErrCancel)
	}
	// Only a confirmation may go to someone who is not active (a pending
	// signup, or an unsubscribed reader asking to come back), and a data
	// export to anyone who asked for it from their preference page and
	// whose address works; every other kind, including any added later,
	// needs an active reader.
	switch {
	case job.Kind == subscribers.KindConfirmation && sub.Status != subscribers.StatusPending && sub.Status != subscribers.StatusUnsubscribed:
		return nil, fmt.Errorf("confirmation for a subscriber who is %s: %w", sub.Status, delivery.ErrCancel)
	case job.Kind == subscribers.KindDataExport:
		if sub.Status == subscribers.StatusBounced {
			return nil, fmt.Errorf("data export for a subscriber who is %s: %w", sub.Status, delivery.ErrCancel)
		}
	case job.Kind != subscribers.KindConfirmation && sub.Status != subscribers.StatusActive:
		return nil, fmt.Errorf("%s for a subscriber who is %s: %w", job.Kind, sub.Status, delivery.ErrCancel)
	}

	d := mailer.Data{
		MessageID:      job.MessageID,
		Date:           job.CreatedAt, // stable across retries, like the Message-ID
		To:             sub.Email,
		Name:           sub.Name,
		UnsubscribeURL: r.baseURL + "/unsubscribe/" + r.subs.UnsubscribeToken(sub.ID),
		PreferencesURL: r.baseURL + "/preferences/" + r.subs.PreferencesToken(sub.ID),
	}
	for _, id := range sub.Newsletters {
		if n, ok := r.newsletters[id]; ok {
			d.Newsletters = append(d.Newsletters, n)
		}
	}
	if job.Kind == subscribers.KindConfirmation {
		// Minted at send time, so no raw token rests in the outbox; a retry
		// mints another, and each works until it expires.
		token, err := r.subs.IssueConfirmToken(ctx, sub.ID)
		if err != nil {
			return nil, err
		}
		d.ConfirmURL = r.baseURL + "/confirm/" + token
	}
	if job.Kind == subscribers.KindDataExport {
		// Like a confirmation's, minted at send time and stored by hash.
		token, err := r.subs.IssueDataExportToken(ctx, sub.ID)
		if err != nil {
			return nil, err
		}
		d.DataExportURL = r.baseURL + "/data/" + token
	}
	e, err := r.composer.Compose(job.Kind, d)
	return r.feedback.finish(ctx, job, e, err)
}

// renderDigest composes one reader's digest: the edition's template is
// prepared once and shared by every reader of the edition; the reader's
// links and the job's Message-ID and Date (both stable across retries) are
// filled in per message. A reader who is no longer active, is paused, or no
// longer takes the newsletter (as the claim read them) is cancelled.
func (r *renderer) renderDigest(ctx context.Context, job delivery.Job) (*mailer.Email, error) {
	if r.digests == nil {
		return nil, fmt.Errorf("render digest %d: this process has no digest service", job.IssueID)
	}
	if subscribers.Status(job.SubscriberStatus) != subscribers.StatusActive {
		return nil, fmt.Errorf("digest for a subscriber who is %s: %w", job.SubscriberStatus, delivery.ErrCancel)
	}
	if job.PausedUntil.After(time.Now()) {
		// Paused after the issue was built: the pause wins.
		return nil, fmt.Errorf("digest for a subscriber who paused until %s: %w", job.PausedUntil.Format(time.DateOnly), delivery.ErrCancel)
	}
	if !job.InNewsletter {
		return nil, fmt.Errorf("digest of issue %d for a subscriber who left its newsletter: %w", job.IssueID, delivery.ErrCancel)
	}
	ed, err := r.editions.get(ctx, job.EditionID, func() (*preparedEdition, error) {
		return r.prepareEdition(ctx, job.EditionID)
	})
	if err != nil {
		return nil, fmt.Errorf("render digest %d for subscriber %d: %w", job.IssueID, job.SubscriberID, err)
	}
	e := ed.tmpl.Message(mailer.DigestReader{
		MessageID:      job.MessageID,
		To:             job.Email,
		Name:           job.Name,
		UnsubscribeURL: r.baseURL + "/unsubscribe/" + r.subs.UnsubscribeToken(job.SubscriberID),
		PreferencesURL: r.baseURL + "/preferences/" + r.subs.PreferencesToken(job.SubscriberID),
	}, job.CreatedAt)
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("render digest %d for subscriber %d: %w", job.IssueID, job.SubscriberID, err)
	}
	return e, nil
}

// preparedEdition is an edition's digest, rendered but for the reader.
type preparedEdition struct {
	newsletterID string
	tmpl         *mailer.DigestTemplate
}

// prepareEdition loads an edition, its issue and articles and prepares the
// template every reader of the edition shares.
func (r *renderer) prepareEdition(ctx context.Context, editionID int64) (*preparedEdition, error) {
	ed, arts, err := r.digests.EditionArticles(ctx, editionID)
	if err != nil {
		return nil, err
	}
	iss, err := r.digests.Issue(ctx, ed.IssueID)
	if err != nil {
		return nil, err
	}
	tmpl, err := r.composer.PrepareDigest(r.digestData(iss.NewsletterID, iss.ID, iss.Subject, iss.Slot, arts))
	if err != nil {
		return nil, err
	}
	return &preparedEdition{newsletterID: iss.NewsletterID, tmpl: tmpl}, nil
}

// digestData is what the digest templates show of an issue.
func (r *renderer) digestData(newsletterID string, issueID int64, subject string, date time.Time, arts []*articles.Article) mailer.DigestData {
	n := r.newsletters[newsletterID]
	d := mailer.DigestData{
		NewsletterID:          newsletterID,
		NewsletterName:        n.Name,
		NewsletterDescription: n.Description,
		IssueID:               issueID,
		Subject:               subject,
		Date:                  date.In(r.zone(newsletterID)),
	}
	if issueID > 0 {
		d.ArchiveURL = r.baseURL + "/archive/" + newsletterID + "/" + strconv.FormatInt(issueID, 10)
	}
	d.Headers = r.feedback.headers(digest.KindDigest, newsletterID, issueID)
	for _, a := range arts {
		d.Articles = append(d.Articles, mailer.DigestArticle{
			Title:       a.Title,
			URL:         a.URL,
			Author:      a.Author,
			PublishedAt: a.PublishedAt,
			ImageURL:    a.ImageURL,
			ImageAlt:    a.ImageAlt,
			Excerpt:     a.Excerpt,
		})
	}
	return d
}

// zone is a newsletter's time zone, UTC when unknown.
func (r *renderer) zone(newsletterID string) *time.Location {
	if loc, ok := r.zones[newsletterID]; ok {
		return loc
	}
	return time.UTC
}

// editionCache keeps the most recently used prepared editions. An edition
// is prepared once even when many workers ask for it at the same moment:
// the first prepares it, the others wait for that result. Failures are not
// kept, so the next attempt tries again.
type editionCache struct {
	mu      sync.Mutex
	max     int
	entries map[int64]*editionEntry
	order   []int64 // least recently used first
}

type editionEntry struct {
	ready chan struct{} // closed once ed and err are set
	ed    *preparedEdition
	err   error
}

func newEditionCache(size int) *editionCache {
	return &editionCache{max: size, entries: make(map[int64]*editionEntry, size)}
}

// get returns the edition id, calling prepare when no one has yet.
func (c *editionCache) get(ctx context.Context, id int64, prepare func() (*preparedEdition, error)) (*preparedEdition, error) {
	c.mu.Lock()
	e, ok := c.entries[id]
	if ok {
		c.touch(id)
		c.mu.Unlock()
	} else {
		e = &editionEntry{ready: make(chan struct{})}
		c.entries[id] = e
		c.order = append(c.order, id)
		if len(c.order) > c.max {
			// Waiters of an evicted entry hold it and still get its result.
			delete(c.entries, c.order[0])
			c.order = c.order[1:]
		}
		c.mu.Unlock()
		e.ed, e.err = prepare()
		if e.err != nil {
			c.mu.Lock()
			if c.entries[id] == e {
				delete(c.entries, id)
				c.order = slices.DeleteFunc(c.order, func(x int64) bool { return x == id })
			}
			c.mu.Unlock()
		}
		close(e.ready)
	}
	select {
	case <-e.ready:
		return e.ed, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// touch moves id to the most recently used end; c.mu is held.
func (c *editionCache) touch(id int64) {
	if i := slices.Index(c.order, id); i >= 0 && i != len(c.order)-1 {
		c.order = append(slices.Delete(c.order, i, i+1), id)
	}
}

// describeSchedule puts a newsletter's cron schedule in words for readers,
// e.g. "every weekday at 7:00 a.m. New York time". Schedules it cannot say
// simply give "".
func describeSchedule(expr, tz string) string {
	f := strings.Fields(expr)
	if len(f) != 5 || f[2] != "*" && f[2] != "?" || f[3] != "*" {
		return ""
	}
	minute, err1 := strconv.Atoi(f[0])
	hour, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || minute < 0 || minute > 59 || hour < 0 || hour > 23 {
		return ""
	}
	var days string
	switch strings.ToLower(f[4]) {
	case "*", "?":
		days = "every day"
	case "1-5", "mon-fri":
		days = "every weekday"
	case "0,6", "6,0", "sat,sun", "sun,sat":
		days = "every Saturday and Sunday"
	default:
		n, err := strconv.Atoi(f[4])
		if err != nil || n < 0 || n > 6 {
			return ""
		}
		days = "every " + time.Weekday(n).String()
	}
	suffix := "a.m."
	h12 := hour
	switch {
	case hour == 0:
		h12 = 12
	case hour == 12:
		suffix = "p.m."
	case hour > 12:
		h12, suffix = hour-12, "p.m."
	}
	place := tz
	if i := strings.LastIndexByte(tz, '/'); i >= 0 {
		place = strings.ReplaceAll(tz[i+1:], "_", " ") + " time"
	}
	return fmt.Sprintf("%s at %d:%02d %s %s", days, h12, minute, suffix, place)
}
