package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"herald/articles"
)

// articlesImport brings articles in from files, folders and feed URLs.
func (a *app) articlesImport(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("articles import")
	u := usage{
		synopsis: "herald articles import PATH... [--config FILE]",
		description: `Imports articles into the database, upserting each by its URL (or its
feed GUID), so that running the same import again changes nothing.

A PATH may be a Markdown file with YAML front matter (.md, .markdown), an
HTML page (.html, .htm), an RSS, Atom or JSON feed file (.xml, .rss, .atom,
.json), a folder (walked for those files; hidden files and folders are
skipped), or an http:// or https:// feed URL (fetched within
articles.fetch_timeout and articles.max_feed_bytes).

One line per file or URL says how many articles were created, updated,
unchanged or rejected; each rejected article follows on its own line with
the reason, and a summary ends the report. Rejected articles do not fail the
import; a path that cannot be read or parsed at all does: the exit code is
then 1, after every other path was imported.`,
		arguments: `  PATH   a file, a folder or a feed URL; give as many as needed`,
		example: `  herald articles import posts/
  herald articles import 2025-06-01-security-council.md
  herald articles import https://passblue.example/feed/ archive.xml`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) == 0 {
		return a.usageError(fs, "at least one PATH (file, folder or feed URL) is required")
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
	im := &articles.Importer{
		Service: newArticles(db, logger),
		Fetcher: newFetcher(cfg),
	}

	bar := newCountBar(a.stderr, "importing", "files")
	var total articles.ImportResult
	var paths, failed int
	err = im.Import(ctx, pos, func(r articles.ImportResult) {
		if bar != nil {
			bar.Clear()
		}
		paths++
		writeImportResult(a.stdout, r)
		total.Created += r.Created
		total.Updated += r.Updated
		total.Unchanged += r.Unchanged
		total.Rejected = append(total.Rejected, r.Rejected...)
		if r.Err != nil {
			failed++
		}
		if bar != nil {
			bar.Add(1)
		}
	})
	if bar != nil {
		bar.Finish()
		bar.Clear()
	}
	fmt.Fprintf(a.stdout, "%s: %d created, %d updated, %d unchanged, %d rejected; %s failed\n",
		plural(paths, "path", "paths"), total.Created, total.Updated, total.Unchanged, len(total.Rejected), plural(failed, "path", "paths"))
	if err != nil {
		return a.fail(fs, err)
	}
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

// writeImportResult writes the report of one imported path: a line of
// counts, or FAILED and the reason, then one line per rejected article.
func writeImportResult(w io.Writer, r articles.ImportResult) {
	if r.Err != nil {
		fmt.Fprintf(w, "%s: FAILED: %s\n", r.Path, oneLine(r.Err.Error()))
	} else {
		fmt.Fprintf(w, "%s: %d created, %d updated, %d unchanged, %d rejected\n",
			r.Path, r.Created, r.Updated, r.Unchanged, len(r.Rejected))
	}
	for _, why := range r.Rejected {
		fmt.Fprintf(w, "  rejected: %s\n", oneLine(why))
	}
}

// feedsPoll polls every configured feed once and reports each one's health.
func (a *app) feedsPoll(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("feeds poll")
	u := usage{
		synopsis: "herald feeds poll [--config FILE]",
		description: `Polls every feed listed under feeds in the configuration once, with a
conditional GET (a feed that has not changed answers 304 and is reported
"not modified"), stores new and changed articles, and prints one line per
feed: ok with the counts of new, updated and unchanged articles, or FAILING
with the reason (timeout, HTTP error, too large, not a feed) and how many
polls in a row have failed. Items a feed holds that cannot become articles
are listed under it.

"herald serve" polls the same feeds every articles.poll_interval; this
command is for trying a new feed or checking on a failing one. The exit
code is 1 when any feed failed.`,
		example: `  herald feeds poll
  herald feeds poll --config /etc/herald/config.yaml`,
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
	if len(cfg.Feeds) == 0 {
		fmt.Fprintln(a.stdout, "no feeds to poll: list them under feeds in the configuration")
		return exitOK
	}

	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	p := newPoller(cfg, db, logger)
	results := p.PollOnce(ctx)
	var failing, created, updated int
	for _, r := range results {
		if r.Err != nil {
			failing++
			fmt.Fprintf(a.stdout, "FAILING %s: %s%s\n", r.URL, oneLine(r.Err.Error()), failureHistory(ctx, db, r.URL))
			continue
		}
		created += r.Created
		updated += r.Updated
		if r.NotModified {
			fmt.Fprintf(a.stdout, "ok      %s: not modified (304)\n", r.URL)
		} else {
			fmt.Fprintf(a.stdout, "ok      %s: %d new, %d updated, %d unchanged\n", r.URL, r.Created, r.Updated, r.Unchanged)
		}
		for _, why := range r.Skipped {
			fmt.Fprintf(a.stdout, "  skipped: %s\n", oneLine(why))
		}
	}
	fmt.Fprintf(a.stdout, "%s polled: %d ok, %d failing; %d new, %d updated articles\n",
		plural(len(results), "feed", "feeds"), len(results)-failing, failing, created, updated)
	if ctx.Err() != nil {
		return a.fail(fs, ctx.Err())
	}
	if failing > 0 {
		return exitFailure
	}
	return exitOK
}

// failureHistory says, for a failing feed, how many polls in a row have
// failed and when it last worked; "" when the store cannot say.
func failureHistory(ctx context.Context, store articles.Store, url string) string {
	st, err := store.FindFeed(ctx, url)
	if err != nil || st.ConsecutiveFailures < 2 {
		return ""
	}
	s := fmt.Sprintf(" (%d polls in a row", st.ConsecutiveFailures)
	if !st.LastSuccessAt.IsZero() {
		s += "; last success " + st.LastSuccessAt.UTC().Format(time.RFC3339)
	}
	return s + ")"
}

// newArticles builds the articles service.
func newArticles(db database, logger *slog.Logger) *articles.Service {
	return articles.NewService(db, articles.Options{Logger: logger.With("component", "articles")})
}

// newFetcher builds the feed fetcher from articles.*; Herald identifies
// itself to publishers with its public URL.
func newFetcher(cfg *Config) *articles.Fetcher {
	return &articles.Fetcher{
		UserAgent: articles.UserAgent(cfg.HTTP.BaseURL),
		Timeout:   cfg.Articles.FetchTimeout,
		MaxBytes:  int64(cfg.Articles.MaxFeedBytes),
	}
}

// newPoller builds the feed poller over feeds[] from articles.*.
func newPoller(cfg *Config, db database, logger *slog.Logger) *articles.Poller {
	return &articles.Poller{
		Store:     db,
		Feeds:     cfg.FeedConfigs(),
		Interval:  cfg.Articles.PollInterval,
		Logger:    logger.With("component", "feeds"),
		UserAgent: articles.UserAgent(cfg.HTTP.BaseURL),
		Timeout:   cfg.Articles.FetchTimeout,
		MaxBytes:  int64(cfg.Articles.MaxFeedBytes),
	}
}

// newCountBar returns a spinner counting items on w when w is a terminal,
// else nil.
func newCountBar(w io.Writer, what, items string) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString(items),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// plural returns "1 feed" or "3 feeds".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// oneLine keeps a report on one line per item whatever an error holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
