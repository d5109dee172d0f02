package articles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"herald"
)

// Poller defaults.
const (
	DefaultPollInterval = 15 * time.Minute
	// PollConcurrency is how many feeds PollOnce fetches at a time.
	PollConcurrency = 4
)

// Poller polls the configured feeds and stores their articles. A feed that
// fails (timeout, HTTP error, too large, not a feed, redirect loop) has the
// reason recorded in its FeedState and never stops the others.
type Poller struct {
	Store      Store
	HTTPClient *http.Client // nil: a new client
	Feeds      []FeedConfig
	Interval   time.Duration // between polls in Run; default 15 min
	Logger     *slog.Logger  // nil: discard
	Now        func() time.Time
	// UserAgent is sent with every request; default UserAgent("").
	UserAgent string
	// Timeout and MaxBytes bound each fetch (defaults: see Fetcher).
	Timeout  time.Duration
	MaxBytes int64
}

// FeedResult is the outcome of polling one feed.
type FeedResult struct {
	URL         string
	NotModified bool     // the server answered 304
	Created     int      // new articles
	Updated     int      // articles whose content changed
	Unchanged   int      // items already stored as they are
	Skipped     []string // items that could not become articles, with why
	Err         error    // the feed failed; a *FetchError for fetch failures
}

// PollOnce polls every feed once, PollConcurrency at a time, and returns one
// result per feed in the order of p.Feeds. It returns early only when ctx
// ends, with the unpolled feeds' Err set to ctx's error.
func (p *Poller) PollOnce(ctx context.Context) []FeedResult {
	results := make([]FeedResult, len(p.Feeds))
	f := &Fetcher{Client: p.HTTPClient, UserAgent: p.UserAgent, Timeout: p.Timeout,
		MaxBytes: p.MaxBytes, Normalizer: NewNormalizer()}
	sem := make(chan struct{}, PollConcurrency)
	var wg sync.WaitGroup
	for i, fc := range p.Feeds {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = FeedResult{URL: fc.URL, Err: ctx.Err()}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = p.pollFeed(ctx, f, fc.URL)
		})
	}
	wg.Wait()
	return results
}

// Run polls every Interval until ctx ends, starting at once, and returns nil
// then. The caller owns the goroutine.
func (p *Poller) Run(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.PollOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *Poller) now() time.Time {
	if p.Now != nil {
		return p.Now().UTC()
	}
	return time.Now().UTC()
}

func (p *Poller) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// pollFeed fetches one feed and stores its articles and state in one
// transaction, so that new validators are never kept without the articles
// they cover.
func (p *Poller) pollFeed(ctx context.Context, f *Fetcher, feedURL string) FeedResult {
	res := FeedResult{URL: feedURL}
	log := p.logger().With("feed", feedURL)
	st, err := p.Store.FindFeed(ctx, feedURL)
	if herald.IsCode(err, herald.ENOTFOUND) {
		st, err = &FeedState{URL: feedURL}, nil
	}
	if err != nil {
		res.Err = fmt.Errorf("load feed state: %w", err)
		log.Error("feed poll failed", "err", res.Err)
		return res
	}

	fetched, ferr := f.Fetch(ctx, feedURL, st.ETag, st.LastModified)
	now := p.now()
	st.LastFetchedAt = now
	if ferr != nil {
		if ctx.Err() != nil {
			// Shutting down is not the feed's fault.
			res.Err = ctx.Err()
			return res
		}
		st.LastError = ferr.Error()
		st.ConsecutiveFailures++
		res.Err = ferr
		if err := p.Store.UpdateArticles(ctx, func(tx Tx) error { return tx.SaveFeed(*st) }); err != nil {
			res.Err = errors.Join(ferr, fmt.Errorf("save feed state: %w", err))
		}
		log.Warn("feed poll failed", "err", res.Err, "consecutive_failures", st.ConsecutiveFailures)
		return res
	}

	st.ETag, st.LastModified = fetched.ETag, fetched.LastModified
	st.LastSuccessAt, st.LastError, st.ConsecutiveFailures = now, "", 0
	res.NotModified = fetched.NotModified
	err = p.Store.UpdateArticles(ctx, func(tx Tx) error {
		res.Created, res.Updated, res.Unchanged = 0, 0, 0
		if fetched.Items != nil {
			for i := range fetched.Items.Articles {
				a := fetched.Items.Articles[i]
				c, ch, err := upsert(tx, &a, now)
				switch {
				case err != nil:
					return fmt.Errorf("article %s: %w", a.URL, err)
				case c:
					res.Created++
				case ch:
					res.Updated++
				default:
					res.Unchanged++
				}
			}
		}
		s := *st
		s.ArticlesSeen += int64(res.Created)
		return tx.SaveFeed(s)
	})
	if err != nil {
		res.Err = fmt.Errorf("store feed %s: %w", feedURL, err)
		res.Created, res.Updated, res.Unchanged = 0, 0, 0
		log.Error("feed poll failed", "err", res.Err)
		return res
	}
	if fetched.Items != nil {
		res.Skipped = fetched.Items.Skipped
	}
	log.Info("feed polled", "not_modified", res.NotModified, "created", res.Created,
		"updated", res.Updated, "unchanged", res.Unchanged, "skipped", len(res.Skipped))
	return res
}
