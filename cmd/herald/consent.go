package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"herald/subscribers"
)

// consentExport is "herald consent export": every consent record as CSV, the
// proof of who agreed to what, when and from where.
func (a *app) consentExport(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("consent export")
	out := fs.String("out", "", "write to `FILE` (atomically: a temporary file renamed into place) instead of standard output")
	u := usage{
		synopsis: "herald consent export [--out FILE] [--config FILE]",
		description: `Streams every consent record as CSV with the header
subscriber_id,email,created_at,ip,user_agent,source,text_version,newsletters,confirmed_at,confirm_ip
(one row per signup, import or confirmation request; newsletter ids separated
by spaces; times in RFC 3339 UTC, empty when unset; IP addresses as
privacy.ip_mode recorded them). The file holds personal data: --out creates it
readable by its owner only.`,
		example: `  herald consent export --out consent.csv`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)
	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	svc, err := newSubscribers(ctx, cfg, db, logger)
	if err != nil {
		return a.fail(fs, err)
	}

	err = a.writeExport(*out, "%d consent records", func(w io.Writer) (int, error) { return svc.ExportConsents(ctx, w) })
	if err != nil {
		return a.fail(fs, err)
	}
	return exitOK
}

// retentionRun is "herald retention run": one retention pass, as the loop
// in serve runs every hour.
func (a *app) retentionRun(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("retention run")
	u := usage{
		synopsis: "herald retention run [--config FILE]",
		description: `Runs one retention pass now, as herald serve does every hour: deletes
signups never confirmed within privacy.pending_retention (with everything they
hold), counts messages settled more than privacy.delivery_log_days ago into
the daily delivery statistics and deletes them, deletes long-expired links,
and scrubs the database file of what was deleted.`,
		example: `  herald retention run`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)
	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	r, err := newRetention(cfg, db, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	st, err := r.RunOnce(ctx)
	if err != nil {
		return a.fail(fs, err)
	}
	removed := ""
	if r.MailCopies != nil {
		removed = fmt.Sprintf(" (and %d of their outbox files)", st.MailCopiesRemoved)
	}
	fmt.Fprintf(a.stdout, "purged %d unconfirmed signups%s, aggregated %d messages, deleted %d expired links\n",
		st.PendingPurged, removed, st.MessagesAggregated, st.TokensDeleted)
	return exitOK
}

// newRetention builds the retention loop from privacy.*. A zero in the
// configuration keeps that kind of data forever. With the outbox transport,
// purging unconfirmed signups also removes their .eml files.
func newRetention(cfg *Config, db database, logger *slog.Logger) (subscribers.Retention, error) {
	ps, ok := db.(subscribers.PrivacyStore)
	if !ok {
		return subscribers.Retention{}, fmt.Errorf("database.driver %s: retention is not supported by this engine yet", cfg.Database.Driver)
	}
	r := subscribers.Retention{
		Store:            ps,
		PendingRetention: cfg.Privacy.PendingRetention,
		DeliveryLogDays:  cfg.Privacy.DeliveryLogDays,
		Interval:         time.Hour,
		Logger:           logger.With("component", "retention"),
	}
	if c := mailCopiesOf(cfg); c != nil {
		r.MailCopies = c // not a typed nil: no copies means none to remove
	}
	if r.PendingRetention == 0 {
		r.PendingRetention = -1
	}
	if r.DeliveryLogDays == 0 {
		r.DeliveryLogDays = -1
	}
	return r, nil
}
