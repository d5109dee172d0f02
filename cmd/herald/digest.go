package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"herald"
	"herald/delivery"
	"herald/digest"
	"herald/mailer"
)

// digestPreview renders the digest a reader would get now, without sending.
func (a *app) digestPreview(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("digest preview")
	to := fs.String("to", "", "render for the active subscriber with this `EMAIL` (default: a new reader who never received an issue)")
	text := fs.Bool("text", false, "write the plain-text part instead of the HTML")
	out := fs.String("out", "", "write to `FILE` (atomically) instead of standard output")
	u := usage{
		synopsis: "herald digest preview NEWSLETTER [--to EMAIL] [--text] [--out FILE] [--config FILE]",
		description: `Renders the digest of NEWSLETTER as it would be built now, and writes its
HTML (or, with --text, its plain-text part) without sending or storing
anything. With --to, the digest is the one that subscriber would get (only
the articles they have not received, their own unsubscribe link); without
it, the one a new reader would get, with sample links.

When there is nothing new for the reader, it says so on stderr and exits 1.`,
		arguments: `  NEWSLETTER   a newsletter id from the configuration, e.g. daily`,
		example: `  herald digest preview daily --out daily.html
  herald digest preview weekly --to ana@example.org --text`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	cfg, nl, code, ok := a.digestArgs(fs, configPath, pos)
	if !ok {
		return code
	}
	logger := newLogger(cfg.Log, a.stderr)

	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	subs, err := newSubscribers(ctx, cfg, db, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	digests, err := newDigests(cfg, db, logger, nil)
	if err != nil {
		return a.fail(fs, err)
	}
	composer, err := newComposer(cfg)
	if err != nil {
		return a.fail(fs, err)
	}
	reader, arts, err := digests.Preview(ctx, nl.ID, *to)
	if herald.IsCode(err, herald.ENOTFOUND) {
		fmt.Fprintf(a.stderr, "%s: %s\n", fs.Name(), herald.ErrorMessage(err))
		return exitFailure
	} else if err != nil {
		return a.fail(fs, err)
	}
	if len(arts) == 0 {
		who := "a new reader"
		if *to != "" {
			who = *to
		}
		fmt.Fprintf(a.stderr, "%s: nothing new for %s in %s: no article they have not received, within the last %s\n",
			fs.Name(), who, nl.ID, nl.Lookback)
		return exitFailure
	}

	r := newRenderer(cfg, subs, db, composer, digests)
	now := time.Now()
	tmpl, err := composer.PrepareDigest(r.digestData(nl.ID, 0, issueSubject(nl, now), now, arts))
	if err != nil {
		return a.fail(fs, err)
	}
	dr := mailer.DigestReader{
		MessageID:      digest.MessageID(0, reader.SubscriberID, addressDomain(cfg.FromAddress().Address)),
		To:             reader.Email,
		Name:           reader.Name,
		UnsubscribeURL: cfg.HTTP.BaseURL + "/unsubscribe/preview",
		PreferencesURL: cfg.HTTP.BaseURL + "/preferences/preview",
	}
	if reader.SubscriberID != 0 {
		dr.UnsubscribeURL = cfg.HTTP.BaseURL + "/unsubscribe/" + subs.UnsubscribeToken(reader.SubscriberID)
		dr.PreferencesURL = cfg.HTTP.BaseURL + "/preferences/" + subs.PreferencesToken(reader.SubscriberID)
	}
	e := tmpl.Email(dr, now)
	if err := e.Validate(); err != nil {
		return a.fail(fs, err)
	}
	body := e.HTML
	if *text {
		body = e.Text
	}
	if *out == "" || *out == "-" {
		if _, err := io.WriteString(a.stdout, body); err != nil {
			return a.fail(fs, err)
		}
	} else {
		err := writeFileAtomic(*out, func(w io.Writer) error {
			_, err := io.WriteString(w, body)
			return err
		})
		if err != nil {
			return a.fail(fs, err)
		}
	}
	fmt.Fprintf(a.stderr, "%s: %q for %s: %s\n", fs.Name(), e.Subject, reader.Email, plural(len(arts), "article", "articles"))
	return exitOK
}

// issueSubject is the subject line the digest service gives an issue of n
// built at t: the newsletter's name and the date in its time zone.
func issueSubject(n digest.Newsletter, t time.Time) string {
	loc := time.UTC
	if n.Schedule != nil {
		loc = n.Schedule.Location()
	}
	return n.Name + " — " + t.In(loc).Format("January 2, 2006")
}

// digestArgs checks the NEWSLETTER argument of a digest command against the
// configuration. ok is false when the command must return code now.
func (a *app) digestArgs(fs *flag.FlagSet, configPath *string, pos []string) (cfg *Config, nl digest.Newsletter, code int, ok bool) {
	switch {
	case len(pos) == 0:
		return nil, nl, a.usageError(fs, "a NEWSLETTER id is required"), false
	case len(pos) > 1:
		return nil, nl, a.usageError(fs, "one NEWSLETTER at a time, got %d arguments", len(pos)), false
	}
	cfg, ok = a.config(fs, *configPath)
	if !ok {
		return nil, nl, exitUsage, false
	}
	nls, err := cfg.DigestNewsletters()
	if err != nil {
		return nil, nl, a.fail(fs, err), false
	}
	i := slices.IndexFunc(nls, func(n digest.Newsletter) bool { return n.ID == pos[0] })
	if i < 0 {
		return nil, nl, a.usageError(fs, "no newsletter %q; the configured ones are %s", pos[0], strings.Join(cfg.NewsletterIDs(), ", ")), false
	}
	return cfg, nls[i], 0, true
}

// digestSend builds an issue now, delivers it in-process and shows progress.
func (a *app) digestSend(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("digest send")
	u := usage{
		synopsis: "herald digest send NEWSLETTER [--config FILE]",
		description: `Builds an issue of NEWSLETTER now, outside its schedule: every active
subscriber who has articles they have not received gets one message. The
messages go through the outbox like every other email; this command runs
delivery.workers workers itself (alongside any running "herald serve" on the
same database) and shows the progress on stderr until every message is
settled: a bar on a terminal, a line a second otherwise. A last line on
stdout sums it up:

  issue 42: sent 1200, failed 0, bounced 3, cancelled 1

A message that fails temporarily is retried with backoff, and the command
waits for it. On Ctrl-C the unsettled messages stay queued for "herald
serve". With delivery.workers 0 it only watches others deliver.

Exit codes: 0 when every message was sent, bounced or cancelled (a bounce
or a reader who left is not a failure of the send); 1 when there is nothing
new to send (no issue is made), when any message failed for good, or when
interrupted.`,
		arguments: `  NEWSLETTER   a newsletter id from the configuration, e.g. daily`,
		example: `  herald digest send daily
  herald digest send weekly --config /etc/herald/config.yaml`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	cfg, nl, code, ok := a.digestArgs(fs, configPath, pos)
	if !ok {
		return code
	}
	logger := newLogger(cfg.Log, a.stderr)

	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	subs, err := newSubscribers(ctx, cfg, db, logger.With("component", "subscribers"))
	if err != nil {
		return a.fail(fs, err)
	}
	var waker engineWaker
	digests, err := newDigests(cfg, db, logger, waker.wake)
	if err != nil {
		return a.fail(fs, err)
	}
	composer, err := newComposer(cfg)
	if err != nil {
		return a.fail(fs, err)
	}
	var engine *delivery.Engine
	if cfg.Delivery.Workers > 0 {
		transport, err := newTransport(cfg, nil)
		if err != nil {
			return a.fail(fs, err)
		}
		defer transport.Close()
		engine = newEngine(cfg, db, newRenderer(cfg, subs, db, composer, digests), transport, nil, logger)
		waker.set(engine)
	}

	// The engine starts before the issue is built, so that the first
	// readers' messages go out while later ones are still being queued. It
	// outlives ctx by the time it takes to settle what it has claimed: a
	// Ctrl-C leaves no message leased to a process that is gone.
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	engineDone := make(chan error, 1)
	if engine != nil {
		go func() { engineDone <- engine.Run(engineCtx) }()
	}
	waitEngine := func() error {
		stopEngine()
		if engine == nil {
			return nil
		}
		return <-engineDone
	}

	iss, err := digests.SendNow(ctx, nl.ID)
	if herald.IsCode(err, herald.ECONFLICT) {
		_ = waitEngine()
		fmt.Fprintf(a.stderr, "%s: nothing new to send: no subscriber of %s has an article they have not received\n", fs.Name(), nl.ID)
		return exitFailure
	} else if err != nil {
		_ = waitEngine()
		return a.fail(fs, err)
	}
	fmt.Fprintf(a.stderr, "%s: issue %d of %s (%q) queued for %s\n", fs.Name(), iss.ID, nl.ID, iss.Subject, plural(iss.Readers, "reader", "readers"))
	if engine == nil {
		fmt.Fprintf(a.stderr, "%s: delivery.workers is 0: waiting for other instances to deliver\n", fs.Name())
	}

	p, err := a.watchIssue(ctx, digests, engine, iss.ID)
	if eerr := waitEngine(); eerr != nil && err == nil {
		err = fmt.Errorf("delivery engine: %w", eerr)
	}
	if final, perr := digests.Progress(context.WithoutCancel(ctx), iss.ID); perr == nil {
		p = final
	}
	fmt.Fprintf(a.stdout, "issue %d: sent %d, failed %d, bounced %d, cancelled %d\n", iss.ID, p.Sent, p.Failed, p.Bounced, p.Cancelled)
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintf(a.stderr, "%s: interrupted: %d messages stay queued for herald serve\n", fs.Name(), p.Pending())
		return exitFailure
	case err != nil:
		return a.fail(fs, err)
	case p.Failed > 0:
		fmt.Fprintf(a.stderr, "%s: %s failed; the log above says why\n", fs.Name(), plural(p.Failed, "message", "messages"))
		return exitFailure
	}
	return exitOK
}

// progressEvery is how often digest send updates its progress display.
// progressPoll is how often it counts the issue's messages by status in the
// database while its own engine is delivering: the count walks the issue's
// rows (about 5 ms at 100,000 of them), so between two counts the display
// adds what the engine has settled since, and a count is made early when
// that could mean the issue is done. Whether it could is checked every
// progressDoneCheck (an atomic load), so that the command exits soon after
// the last settle rather than at the next display tick; early counts are at
// least that far apart. Without an engine of its own (other instances
// deliver) it counts every progressPollIdle.
const (
	progressEvery     = 200 * time.Millisecond
	progressPoll      = 2 * time.Second
	progressPollIdle  = time.Second
	progressDoneCheck = 10 * time.Millisecond
)

// watchIssue follows the issue's progress until the database says nothing
// is pending, showing it on stderr, and returns the last progress read.
// engine is this process's delivery engine, nil when it has none.
func (a *app) watchIssue(ctx context.Context, digests *digest.Service, engine *delivery.Engine, issueID int64) (digest.Progress, error) {
	f, ok := a.stderr.(*os.File)
	terminal := ok && term.IsTerminal(int(f.Fd()))
	var bar *progressbar.ProgressBar // made once the total is known
	defer func() {
		if bar != nil {
			bar.Finish()
			bar.Clear()
		}
	}()
	settledNow := func() int64 {
		if engine == nil {
			return 0
		}
		return engine.Stats().Settled
	}
	pollEvery := progressPoll
	if engine == nil {
		pollEvery = progressPollIdle
	}
	start := time.Now()
	lastLine := start
	every := progressEvery
	if engine != nil {
		every = progressDoneCheck
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var (
		p        digest.Progress // as last counted in the database
		polledAt time.Time
		base     int64     // the engine's settled count before that count
		shownAt  time.Time // when the display was last updated
	)
	for {
		now := time.Now()
		since := settledNow() - base // settled by this engine since the last count
		if polledAt.IsZero() || now.Sub(polledAt) >= pollEvery ||
			since >= int64(p.Pending()) && now.Sub(polledAt) >= progressDoneCheck {
			s := settledNow()
			var err error
			if p, err = digests.Progress(ctx, issueID); err != nil {
				return p, err
			}
			polledAt, base, since = now, s, 0
			if p.Pending() == 0 {
				a.showProgress(&bar, terminal, issueID, p, start, &lastLine, true)
				return p, nil
			}
		}
		if now.Sub(shownAt) >= progressEvery {
			// Between counts: what the engine settled since is shown as
			// sent (the next count says how each really ended).
			shownAt = now
			shown := p
			d := int(min(since, int64(shown.Queued)))
			shown.Queued -= d
			shown.Sent += d
			a.showProgress(&bar, terminal, issueID, shown, start, &lastLine, false)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-tick.C:
		}
	}
}

// showProgress draws p: on a terminal the bar (made at the first call), and
// otherwise a line a second, and the last one.
func (a *app) showProgress(bar **progressbar.ProgressBar, terminal bool, issueID int64, p digest.Progress, start time.Time, lastLine *time.Time, last bool) {
	settled := p.Total - p.Pending()
	if terminal {
		if *bar == nil {
			*bar = progressbar.NewOptions(p.Total,
				progressbar.OptionSetWriter(a.stderr),
				progressbar.OptionSetWidth(30),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("msg"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
		(*bar).Describe(fmt.Sprintf("issue %d: sent %d, failed %d", issueID, p.Sent, p.Failed+p.Bounced))
		(*bar).Set(settled)
	} else if now := time.Now(); now.Sub(*lastLine) >= time.Second || last {
		*lastLine = now
		fmt.Fprintln(a.stderr, progressLine(issueID, p, now.Sub(start)))
	}
}

// progressLine is the plain progress report for a non-terminal stderr:
// counts, rate and, once there is a rate, the time left.
func progressLine(issueID int64, p digest.Progress, elapsed time.Duration) string {
	settled := p.Total - p.Pending()
	s := fmt.Sprintf("issue %d: %d/%d settled (sent %d, failed %d, bounced %d, cancelled %d)",
		issueID, settled, p.Total, p.Sent, p.Failed, p.Bounced, p.Cancelled)
	if secs := elapsed.Seconds(); secs > 0 && settled > 0 {
		rate := float64(settled) / secs
		s += fmt.Sprintf(", %.1f/s", rate)
		if p.Pending() > 0 {
			eta := time.Duration(float64(p.Pending()) / rate * float64(time.Second)).Round(time.Second)
			s += ", ETA " + eta.String()
		}
	}
	return s
}
