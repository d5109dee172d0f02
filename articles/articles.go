// Package articles is Herald's content in: the Article every digest is made
// of, and the ways articles arrive (RSS, Atom and JSON feeds polled with
// conditional GET, Markdown and HTML files, the admin API). Everything that
// comes in is validated, sanitised for email and hashed, so that an upsert by
// URL (or feed GUID) can tell a new article from an edited one from a re-run
// that changes nothing.
package articles

import (
	"context"
	"time"
)

// Limits on what an article may hold.
const (
	MaxURLLen     = 2048
	MaxTitleLen   = 500 // characters
	MaxAuthorLen  = 300 // characters
	MaxTags       = 20
	MaxTagLen     = 100      // characters
	MaxSummaryLen = 64 << 10 // bytes
	MaxContentLen = 1 << 20  // bytes, of the HTML as received
	ExcerptLen    = 300      // characters, ellipsis included
)

// SourceAPI is the Source of articles posted through the admin API.
const SourceAPI = "api"

// Article is one piece of content a digest can carry. Text fields are plain
// text unless their name says HTML; ContentHTML is sanitised for email.
type Article struct {
	ID          int64
	URL         string // canonical, absolute http(s); unique
	GUID        string // the feed's id for the item; "" for other sources
	Title       string
	Author      string
	PublishedAt time.Time
	// UpdatedAt is when the article last changed: the source's
	// modification time when it gives a later one, else when Herald saw
	// the change.
	UpdatedAt   time.Time
	Summary     string // plain text, the standfirst
	ContentHTML string // sanitised
	ContentText string // plain-text rendering of ContentHTML
	Excerpt     string // plain text, about ExcerptLen characters
	ImageURL    string
	ImageAlt    string
	Tags        []string // lower case, unique, sorted
	// Source says where the article came from: the feed URL, SourceAPI, or
	// "file:" and the file's base name.
	Source    string
	CreatedAt time.Time
	// Hash is the hex SHA-256 of the normalised content (see ComputeHash):
	// equal hashes mean nothing a reader sees has changed.
	Hash string
}

// Filter selects articles for FindArticles and Service.List.
type Filter struct {
	Source  string    // empty: any
	Tag     string    // empty: any
	Since   time.Time // only articles published at or after; zero: any
	AfterID int64     // cursor: only ids greater than this
	Limit   int       // 0: the store's default page size
}

// FeedState is what Herald remembers about one polled feed: the validators
// for the next conditional GET and the feed's health.
type FeedState struct {
	URL                 string
	ETag                string
	LastModified        string // as the server sent it
	LastFetchedAt       time.Time
	LastSuccessAt       time.Time
	LastError           string // "" after a success
	ConsecutiveFailures int
	// ArticlesSeen counts the articles this feed has brought in (created),
	// over its life.
	ArticlesSeen int64
}

// Failing reports whether the last poll of the feed failed.
func (s FeedState) Failing() bool { return s.ConsecutiveFailures > 0 }

// FeedConfig is one feed from the configuration (`feeds`).
type FeedConfig struct {
	URL string
	// Newsletters lists the newsletters this feed's articles are for; the
	// digest side matches them through Article.Source.
	Newsletters []string
}

// Store is what this package needs from a database. Methods return a
// *herald.Error with ENOTFOUND when a looked-up row does not exist and
// ECONFLICT on a uniqueness violation.
type Store interface {
	// UpdateArticles runs fn in one read-write transaction, committed when
	// fn returns nil and rolled back otherwise; fn's error is returned as
	// is.
	UpdateArticles(ctx context.Context, fn func(tx Tx) error) error
	// FindArticleByID returns one article with its tags, or ENOTFOUND.
	FindArticleByID(ctx context.Context, id int64) (*Article, error)
	// FindArticles returns the articles matching f, ordered by id.
	FindArticles(ctx context.Context, f Filter) ([]*Article, error)
	// FindFeed returns the state of the feed with that URL, or ENOTFOUND.
	FindFeed(ctx context.Context, url string) (*FeedState, error)
	// FindFeeds returns the state of every feed ever polled, by URL.
	FindFeeds(ctx context.Context) ([]FeedState, error)
}

// Tx is the set of operations available inside Store.UpdateArticles.
type Tx interface {
	// ArticleByURL returns the article with that URL, or ENOTFOUND.
	ArticleByURL(url string) (*Article, error)
	// ArticleByGUID returns the newest article with that source and GUID,
	// or ENOTFOUND.
	ArticleByGUID(source, guid string) (*Article, error)
	// CreateArticle inserts a with its tags and sets a.ID. ECONFLICT when
	// its URL exists.
	CreateArticle(a *Article) error
	// UpdateArticle overwrites every field of the article a.ID but ID and
	// CreatedAt, and replaces its tags. ENOTFOUND when a.ID does not exist;
	// ECONFLICT when its new URL belongs to another article.
	UpdateArticle(a *Article) error
	// SaveFeed creates or replaces the state of the feed s.URL.
	SaveFeed(s FeedState) error
}
