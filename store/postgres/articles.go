package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"herald/articles"
)

// articleColumns lists what scanArticle reads; tags come as one sorted array
// (tag is COLLATE "C": byte order).
const articleColumns = `a.id, a.url, a.guid, a.source, a.title, a.author, a.summary,
    a.content_html, a.content_text, a.excerpt, a.image_url, a.image_alt, a.hash,
    a.published_at, a.updated_at, a.created_at,
    (SELECT array_agg(t.tag ORDER BY t.tag) FROM article_tags t WHERE t.article_id = a.id)`

func scanArticle(row pgx.Row) (*articles.Article, error) {
	var (
		a                           articles.Article
		published, updated, created pgtype.Timestamptz
	)
	if err := row.Scan(&a.ID, &a.URL, &a.GUID, &a.Source, &a.Title, &a.Author, &a.Summary,
		&a.ContentHTML, &a.ContentText, &a.Excerpt, &a.ImageURL, &a.ImageAlt, &a.Hash,
		&published, &updated, &created, &a.Tags); err != nil {
		return nil, err
	}
	a.PublishedAt = decTime(published)
	a.UpdatedAt = decTime(updated)
	a.CreatedAt = decTime(created)
	if len(a.Tags) == 0 {
		a.Tags = nil
	}
	return &a, nil
}

// UpdateArticles runs fn in one read-write transaction, committed when fn
// returns nil and rolled back otherwise; fn's error is returned as is. Once
// a Tx method has failed with anything but ENOTFOUND or a skipped insert's
// ECONFLICT, PostgreSQL refuses further statements in the transaction: fn
// should return the error.
func (db *DB) UpdateArticles(ctx context.Context, fn func(articles.Tx) error) error {
	return db.inTx(ctx, func(t pgx.Tx) error {
		return fn(&articleTx{ctx: ctx, tx: t})
	})
}

// FindArticleByID returns one article with its tags, or ENOTFOUND.
func (db *DB) FindArticleByID(ctx context.Context, id int64) (*articles.Article, error) {
	a, err := scanArticle(db.pool.QueryRow(ctx,
		`SELECT `+articleColumns+` FROM articles a WHERE a.id = $1`, id))
	if err != nil {
		return nil, translate(err, fmt.Sprintf("find article %d", id), "article")
	}
	return a, nil
}

// FindArticles returns up to f.Limit (default DefaultLimit, at most
// MaxLimit) articles matching f, ordered by id.
func (db *DB) FindArticles(ctx context.Context, f articles.Filter) ([]*articles.Article, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	var a args
	var q strings.Builder
	q.WriteString(`SELECT ` + articleColumns + ` FROM articles a WHERE a.id > ` + a.add(f.AfterID))
	if f.Source != "" {
		q.WriteString(` AND a.source = ` + a.add(f.Source))
	}
	if f.Tag != "" {
		q.WriteString(` AND EXISTS (SELECT 1 FROM article_tags t WHERE t.article_id = a.id AND t.tag = ` +
			a.add(strings.ToLower(strings.TrimSpace(f.Tag))) + `)`)
	}
	if !f.Since.IsZero() {
		q.WriteString(` AND a.published_at >= ` + a.add(f.Since))
	}
	q.WriteString(` ORDER BY a.id LIMIT ` + a.add(limit))

	rows, err := db.pool.Query(ctx, q.String(), a...)
	if err != nil {
		return nil, translate(err, "find articles", "article")
	}
	defer rows.Close()
	var out []*articles.Article
	for rows.Next() {
		a, err := scanArticle(rows)
		if err != nil {
			return nil, translate(err, "find articles", "article")
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find articles", "article")
	}
	return out, nil
}

const feedColumns = `url, etag, last_modified, last_fetched_at, last_success_at, last_error,
    consecutive_failures, articles_seen`

func scanFeed(row pgx.Row) (*articles.FeedState, error) {
	var (
		s                articles.FeedState
		fetched, success pgtype.Timestamptz
	)
	if err := row.Scan(&s.URL, &s.ETag, &s.LastModified, &fetched, &success, &s.LastError,
		&s.ConsecutiveFailures, &s.ArticlesSeen); err != nil {
		return nil, err
	}
	s.LastFetchedAt = decTime(fetched)
	s.LastSuccessAt = decTime(success)
	return &s, nil
}

// FindFeed returns the state of the feed with that URL, or ENOTFOUND.
func (db *DB) FindFeed(ctx context.Context, url string) (*articles.FeedState, error) {
	s, err := scanFeed(db.pool.QueryRow(ctx, `SELECT `+feedColumns+` FROM feeds WHERE url = $1`, url))
	if err != nil {
		return nil, translate(err, "find feed", "feed")
	}
	return s, nil
}

// FindFeeds returns the state of every feed ever polled, by URL.
func (db *DB) FindFeeds(ctx context.Context) ([]articles.FeedState, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+feedColumns+` FROM feeds ORDER BY url`)
	if err != nil {
		return nil, translate(err, "find feeds", "feed")
	}
	defer rows.Close()
	var out []articles.FeedState
	for rows.Next() {
		s, err := scanFeed(rows)
		if err != nil {
			return nil, translate(err, "find feeds", "feed")
		}
		out = append(out, *s)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find feeds", "feed")
	}
	return out, nil
}

// articleTx implements articles.Tx on a transaction.
type articleTx struct {
	ctx context.Context
	tx  pgx.Tx
}

// ArticleByURL returns the article with that URL, or ENOTFOUND.
func (t *articleTx) ArticleByURL(url string) (*articles.Article, error) {
	a, err := scanArticle(t.tx.QueryRow(t.ctx,
		`SELECT `+articleColumns+` FROM articles a WHERE a.url = $1`, url))
	if err != nil {
		return nil, translate(err, "article by url", "article")
	}
	return a, nil
}

// ArticleByGUID returns the newest article with that source and GUID, or
// ENOTFOUND.
func (t *articleTx) ArticleByGUID(source, guid string) (*articles.Article, error) {
	a, err := scanArticle(t.tx.QueryRow(t.ctx,
		`SELECT `+articleColumns+` FROM articles a WHERE a.guid = $1 AND a.source = $2 AND a.guid <> ''
         ORDER BY a.id DESC LIMIT 1`, guid, source))
	if err != nil {
		return nil, translate(err, "article by guid", "article")
	}
	return a, nil
}

// createArticleSQL inserts an article and its tags in one statement. A taken
// URL skips the insert (no row comes back) instead of failing, so the
// transaction stays usable.
const createArticleSQL = `WITH a AS (
    INSERT INTO articles (url, guid, source, title, author, summary, content_html, content_text, excerpt,
        image_url, image_alt, hash, published_at, updated_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT DO NOTHING
    RETURNING id),
t AS (
    INSERT INTO article_tags (article_id, tag)
    SELECT a.id, x FROM a, unnest($16::text[]) AS x)
SELECT id FROM a`

// CreateArticle inserts a with its tags and sets a.ID. ECONFLICT when its
// URL exists.
func (t *articleTx) CreateArticle(a *articles.Article) error {
	var id int64
	err := t.tx.QueryRow(t.ctx, createArticleSQL,
		a.URL, a.GUID, a.Source, a.Title, a.Author, a.Summary, a.ContentHTML, a.ContentText, a.Excerpt,
		a.ImageURL, a.ImageAlt, a.Hash, a.PublishedAt, a.UpdatedAt, a.CreatedAt, uniqueIDs(a.Tags)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return conflict("create article", "article")
	} else if err != nil {
		return translate(err, "create article", "article")
	}
	a.ID = id
	return nil
}

// updateArticleSQL updates an article and replaces its tags in one
// statement: the tags dropped are deleted, the new ones inserted.
const updateArticleSQL = `WITH a AS (
    UPDATE articles
    SET url = $2, guid = $3, source = $4, title = $5, author = $6, summary = $7, content_html = $8,
        content_text = $9, excerpt = $10, image_url = $11, image_alt = $12, hash = $13,
        published_at = $14, updated_at = $15
    WHERE id = $1
    RETURNING id),
d AS (
    DELETE FROM article_tags t USING a
    WHERE t.article_id = a.id AND NOT t.tag = ANY ($16::text[])),
i AS (
    INSERT INTO article_tags (article_id, tag)
    SELECT a.id, x FROM a, unnest($16::text[]) AS x
    ON CONFLICT DO NOTHING)
SELECT count(*) FROM a`

// UpdateArticle overwrites every field of the article a.ID but ID and
// CreatedAt, and replaces its tags. ENOTFOUND when a.ID does not exist;
// ECONFLICT when its new URL belongs to another article (and then the
// transaction is aborted: fn must return).
func (t *articleTx) UpdateArticle(a *articles.Article) error {
	op := fmt.Sprintf("update article %d", a.ID)
	var n int
	err := t.tx.QueryRow(t.ctx, updateArticleSQL,
		a.ID, a.URL, a.GUID, a.Source, a.Title, a.Author, a.Summary, a.ContentHTML,
		a.ContentText, a.Excerpt, a.ImageURL, a.ImageAlt, a.Hash,
		a.PublishedAt, a.UpdatedAt, uniqueIDs(a.Tags)).Scan(&n)
	if err != nil {
		return translate(err, op, "article")
	}
	if n == 0 {
		return notFound(op, "article")
	}
	return nil
}

// SaveFeed creates or replaces the state of the feed s.URL.
func (t *articleTx) SaveFeed(s articles.FeedState) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO feeds (`+feedColumns+`)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
            last_fetched_at = excluded.last_fetched_at, last_success_at = excluded.last_success_at,
            last_error = excluded.last_error, consecutive_failures = excluded.consecutive_failures,
            articles_seen = excluded.articles_seen`,
		s.URL, s.ETag, s.LastModified, encTime(s.LastFetchedAt), encTime(s.LastSuccessAt), s.LastError,
		s.ConsecutiveFailures, s.ArticlesSeen)
	return translate(err, "save feed", "feed")
}
