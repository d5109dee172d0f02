package digest

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"herald/articles"
)

// Defaults of a Newsletter's limits, applied where a field is zero.
const (
	DefaultMaxArticles       = 10
	DefaultNewReaderArticles = 3
	DefaultLookback          = 30 * 24 * time.Hour
)

// FutureSkew is how far ahead of now an article's publication time may be
// and still count as published: a clock a little ahead is tolerated, an
// embargoed article is not sent early.
const FutureSkew = 5 * time.Minute

// LateIngest is how long before a reader's last issue an article may have
// been published and still be new to them, when Herald learned of it after
// that issue: a feed polled late still reaches them, an archive import does
// not.
const LateIngest = 48 * time.Hour

// withDefaults returns n with its zero limits set to the defaults, and
// NewReaderArticles at most MaxArticles.
func (n Newsletter) withDefaults() Newsletter {
	if n.MaxArticles <= 0 {
		n.MaxArticles = DefaultMaxArticles
	}
	if n.NewReaderArticles <= 0 {
		n.NewReaderArticles = DefaultNewReaderArticles
	}
	n.NewReaderArticles = min(n.NewReaderArticles, n.MaxArticles)
	if n.Lookback <= 0 {
		n.Lookback = DefaultLookback
	}
	return n
}

// Matches reports whether the article belongs in the newsletter: it came
// from one of n.Feeds, or carries one of n.Tags, or, for a newsletter with
// no tags, it came from no feed (the admin API or a file).
func (n Newsletter) Matches(a *articles.Article) bool {
	if slices.Contains(n.Feeds, a.Source) {
		return true
	}
	if len(n.Tags) == 0 {
		return a.Source == articles.SourceAPI || strings.HasPrefix(a.Source, "file:")
	}
	for _, t := range a.Tags {
		for _, want := range n.Tags {
			if strings.EqualFold(t, want) {
				return true
			}
		}
	}
	return false
}

// Build returns the articles reader r gets in the issue of newsletter n
// built at now, newest first, from candidates (the newsletter's articles:
// the caller filters them with Matches). It does no I/O.
//
// Articles published more than n.Lookback before now, or more than
// FutureSkew after it, never go in. A reader who never received an issue
// (zero Since) gets the newest n.NewReaderArticles. A returning reader gets
// the articles Herald learned of (CreatedAt) after Since that were published
// no more than LateIngest before Since, at most n.MaxArticles: a reader back
// from a pause gets the newest of what they missed. An empty result means
// no issue for this reader.
//
// The order is PublishedAt descending, then ID descending, so equal inputs
// give equal editions.
func Build(n Newsletter, r Reader, candidates []*articles.Article, now time.Time) []*articles.Article {
	n = n.withDefaults()
	oldest, newest := now.Add(-n.Lookback), now.Add(FutureSkew)
	limit := n.MaxArticles
	var published time.Time
	if r.Since.IsZero() {
		limit = n.NewReaderArticles
	} else {
		published = r.Since.Add(-LateIngest)
	}
	out := make([]*articles.Article, 0, min(len(candidates), limit))
	for _, a := range candidates {
		if a.PublishedAt.Before(oldest) || a.PublishedAt.After(newest) {
			continue
		}
		if !r.Since.IsZero() && (!a.CreatedAt.After(r.Since) || !a.PublishedAt.After(published)) {
			continue
		}
		out = insertTop(out, a, limit)
	}
	return out
}

// newerFirst orders articles by publication time, newest first, then by
// descending ID.
func newerFirst(a, b *articles.Article) int {
	return cmp.Or(b.PublishedAt.Compare(a.PublishedAt), cmp.Compare(b.ID, a.ID))
}

// insertTop inserts a into top (sorted by newerFirst) and keeps at most
// limit articles. With candidates already newest first, an article that
// does not make the cut costs one comparison.
func insertTop(top []*articles.Article, a *articles.Article, limit int) []*articles.Article {
	if len(top) == limit && newerFirst(a, top[len(top)-1]) >= 0 {
		return top
	}
	i, _ := slices.BinarySearchFunc(top, a, newerFirst)
	if len(top) == limit {
		top = top[:len(top)-1]
	}
	return slices.Insert(top, i, a)
}
