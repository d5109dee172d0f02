package articles

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"herald"
)

// upsertBatch is how many articles UpsertMany writes per transaction: one
// SQLite writer commits batches far faster than single rows.
const upsertBatch = 500

// Options configure a Service.
type Options struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
	// Normalizer validates and cleans input (nil: a new one).
	Normalizer *Normalizer
}

// Service stores articles from every source through one upsert.
type Service struct {
	store  Store
	norm   *Normalizer
	now    func() time.Time
	logger *slog.Logger
}

// NewService returns a Service over store.
func NewService(store Store, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Normalizer == nil {
		opts.Normalizer = NewNormalizer()
	}
	return &Service{store: store, norm: opts.Normalizer, now: opts.Now, logger: opts.Logger}
}

// Normalizer returns the Normalizer the service cleans input with, for
// callers that render Markdown or parse files before upserting.
func (s *Service) Normalizer() *Normalizer { return s.norm }

// Upsert normalises a and stores it by URL (or, for a feed item whose URL
// changed, by source and GUID). created is true for a new article; changed
// is true when a known article's hash differed and it was rewritten (its
// UpdatedAt bumped); both false when nothing changed and nothing was
// written, so re-running an import is harmless. Invalid input is EINVALID
// naming the field.
func (s *Service) Upsert(ctx context.Context, a Article) (created, changed bool, err error) {
	if err := s.norm.Normalize(&a); err != nil {
		return false, false, err
	}
	err = s.store.UpdateArticles(ctx, func(tx Tx) error {
		var err error
		created, changed, err = upsert(tx, &a, s.now().UTC())
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("upsert article: %w", err)
	}
	return created, changed, nil
}

// Result is the outcome of one article of UpsertMany.
type Result struct {
	URL     string
	ID      int64
	Created bool
	Changed bool
	Err     error // the article was invalid (EINVALID) and was not stored
}

// UpsertMany upserts articles in batches, one transaction per batch. An
// invalid article gets its error in its Result and does not stop the
// others; a store failure stops everything and is returned.
func (s *Service) UpsertMany(ctx context.Context, as []Article) ([]Result, error) {
	results := make([]Result, len(as))
	for start := 0; start < len(as); start += upsertBatch {
		end := min(start+upsertBatch, len(as))
		batch := make([]Article, end-start)
		copy(batch, as[start:end])
		for i := range batch {
			results[start+i].URL = batch[i].URL
			if err := s.norm.Normalize(&batch[i]); err != nil {
				results[start+i].Err = err
			}
		}
		now := s.now().UTC()
		err := s.store.UpdateArticles(ctx, func(tx Tx) error {
			for i := range batch {
				r := &results[start+i]
				if r.Err != nil {
					continue
				}
				c, ch, err := upsert(tx, &batch[i], now)
				if herald.IsCode(err, herald.EINVALID) {
					r.Err = err
					continue
				} else if err != nil {
					return fmt.Errorf("article %s: %w", batch[i].URL, err)
				}
				r.URL, r.ID, r.Created, r.Changed = batch[i].URL, batch[i].ID, c, ch
			}
			return nil
		})
		if err != nil {
			// The batch rolled back: none of its outcomes stand.
			for i := start; i < end; i++ {
				results[i].Created, results[i].Changed, results[i].ID = false, false, 0
			}
			return results[:end], fmt.Errorf("upsert articles: %w", err)
		}
	}
	return results, nil
}

// upsert writes one normalised article inside tx and sets a.ID. A zero
// PublishedAt becomes now for a new article and stays the stored date for
// a known one.
func upsert(tx Tx, a *Article, now time.Time) (created, changed bool, err error) {
	old, err := tx.ArticleByURL(a.URL)
	if herald.IsCode(err, herald.ENOTFOUND) && a.GUID != "" && a.Source != "" {
		old, err = tx.ArticleByGUID(a.Source, a.GUID)
	}
	switch {
	case herald.IsCode(err, herald.ENOTFOUND):
		if a.PublishedAt.IsZero() {
			a.PublishedAt = now.Truncate(time.Millisecond)
		}
		if a.UpdatedAt.IsZero() || a.UpdatedAt.Before(a.PublishedAt) {
			a.UpdatedAt = a.PublishedAt
		}
		a.CreatedAt = now
		a.Hash = a.ComputeHash()
		if err := tx.CreateArticle(a); err != nil {
			return false, false, err
		}
		return true, false, nil
	case err != nil:
		return false, false, err
	}

	if a.PublishedAt.IsZero() {
		a.PublishedAt = old.PublishedAt
	}
	a.Hash = a.ComputeHash()
	a.ID, a.CreatedAt = old.ID, old.CreatedAt
	if a.Hash == old.Hash {
		a.UpdatedAt = old.UpdatedAt
		// Source is not in the hash: an article first imported from a file
		// and then seen in the feed keeps its first source.
		a.Source = old.Source
		return false, false, nil
	}
	if a.UpdatedAt.IsZero() || !a.UpdatedAt.After(old.UpdatedAt) {
		a.UpdatedAt = now
	}
	if err := tx.UpdateArticle(a); err != nil {
		return false, false, err
	}
	return false, true, nil
}

// Get returns one article, or ENOTFOUND.
func (s *Service) Get(ctx context.Context, id int64) (*Article, error) {
	a, err := s.store.FindArticleByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get article %d: %w", id, err)
	}
	return a, nil
}

// List returns the articles matching f, ordered by id; pass the last id as
// f.AfterID for the next page.
func (s *Service) List(ctx context.Context, f Filter) ([]*Article, error) {
	as, err := s.store.FindArticles(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list articles: %w", err)
	}
	return as, nil
}

// Feeds returns the state and health of every feed polled so far.
func (s *Service) Feeds(ctx context.Context) ([]FeedState, error) {
	fs, err := s.store.FindFeeds(ctx)
	if err != nil {
		return nil, fmt.Errorf("list feeds: %w", err)
	}
	return fs, nil
}
