package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"herald"
	"herald/articles"
	"herald/delivery"
	"herald/mailer"
	"herald/store/sqlite"
	"herald/subscribers"
)

// database is what the commands need from a storage engine. Both engines
// will satisfy it; only openDatabase knows which one runs.
type database interface {
	subscribers.Store
	delivery.Store
	articles.Store
	// Migrate applies the migrations the database lacks.
	Migrate(ctx context.Context) error
	// MigrationsPending counts the migrations the database lacks.
	MigrationsPending(ctx context.Context) (int, error)
	Close() error
}

// errPostgresNotBuilt is returned when database.driver asks for the engine
// this build does not have yet.
var errPostgresNotBuilt = errors.New("database.driver is postgres, but the PostgreSQL engine is not built into this version of Herald yet; set database.driver to sqlite")

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
		return nil, errPostgresNotBuilt
	default:
		return nil, fmt.Errorf("database.driver: unknown engine %q", cfg.Database.Driver)
	}
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

// newSubscribers builds the subscribers service from the configuration.
func newSubscribers(ctx context.Context, cfg *Config, db database, logger *slog.Logger) (*subscribers.Service, error) {
	return subscribers.NewService(ctx, db, subscribers.Options{
		Newsletters:     cfg.NewsletterIDs(),
		MessageIDDomain: addressDomain(cfg.FromAddress().Address),
		ConsentVersion:  cfg.Site.ConsentVersion,
		Logger:          logger,
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
}

var _ delivery.Renderer = (*renderer)(nil)

// newRenderer builds the renderer from the configuration.
func newRenderer(cfg *Config, subs *subscribers.Service, store subscribers.Store, composer *mailer.Composer) *renderer {
	nls := make(map[string]mailer.NewsletterInfo, len(cfg.Newsletters))
	for _, n := range cfg.Newsletters {
		nls[n.ID] = mailer.NewsletterInfo{
			ID:          n.ID,
			Name:        n.Name,
			Description: n.Description,
			Frequency:   describeSchedule(n.Schedule, n.Timezone),
		}
	}
	return &renderer{subs: subs, store: store, composer: composer, baseURL: cfg.HTTP.BaseURL, newsletters: nls}
}

// Render composes job's email. A confirmation for a reader who is no longer
// pending, a welcome for one who is not active, and any email to a reader
// who has been erased are cancelled (delivery.ErrCancel).
func (r *renderer) Render(ctx context.Context, job delivery.Job) (*mailer.Email, error) {
	sub, err := r.store.FindSubscriberByID(ctx, job.SubscriberID)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, fmt.Errorf("subscriber %d no longer exists: %w", job.SubscriberID, delivery.ErrCancel)
	} else if err != nil {
		return nil, fmt.Errorf("render %s for subscriber %d: %w", job.Kind, job.SubscriberID, err)
	}
	switch {
	case job.Kind == subscribers.KindConfirmation && sub.Status != subscribers.StatusPending:
		return nil, fmt.Errorf("confirmation for a subscriber who is %s: %w", sub.Status, delivery.ErrCancel)
	case job.Kind == subscribers.KindWelcome && sub.Status != subscribers.StatusActive:
		return nil, fmt.Errorf("welcome for a subscriber who is %s: %w", sub.Status, delivery.ErrCancel)
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
	return r.composer.Compose(job.Kind, d)
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
