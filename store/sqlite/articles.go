package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"herald/articles"
)

// The interfaces this file implements.
var (
	_ articles.Store = (*DB)(nil)
	_ articles.Tx    = (*articleTx)(nil)
)

// articleColumns lists what scanArticle reads; tags are folded into one
// column separated by the unit separator (U+001F), which a tag never holds.
const articleColumns = `a.id, a.url, a.guid, a.source, a.title, a.author, a.summary,
    a.content_html, a.content_text, a.excerpt, a.image_url, a.image_alt, a.hash,
    a.published_at, a.updated_at, a.created_at,
    (SELECT group_concat(t.tag, char(31) ORDER BY t.tag) FROM article_tags t WHERE t.article_id = a.id)`

func scanArticle(row scanner) (*articles.Article, error) {
	var (
		a                           articles.Article
		published, updated, created sql.NullInt64
		tags                        sql.NullString
	)
	if err := row.Scan(&a.ID, &a.URL, &a.GUID, &a.Source, &a.Title, &a.Author, &a.Summary,
		&a.ContentHTML, &a.ContentText, &a.Excerpt, &a.ImageURL, &a.ImageAlt, &a.Hash,
		&published, &updated, &created, &tags); err != nil {
		return nil, err
	}
	a.PublishedAt = decTime(published)
	a.UpdatedAt = decTime(updated)
	a.CreatedAt = decTime(created)
	if tags.String != "" {
		a.Tags = strings.Split(tags.String, "\x1f")
	}
	return &a, nil
}

// UpdateArticles runs fn in one write transaction, committed when fn returns
// nil and rolled back otherwise; fn's error is returned as is. fn must not
// call db's write methods: there is one writer connection, and fn holds it.
func (db *DB) UpdateArticles(ctx context.Context, fn func(articles.Tx) error) error {
	return db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		return fn(&articleTx{ctx: ctx, tx: t})
	})
}

// FindArticleByID returns one article with its tags, or ENOTFOUND.
func (db *DB) FindArticleByID(ctx context.Context, id int64) (*articles.Article, error) {
	a, err := scanArticle(db.reader.QueryRowContext(ctx,
		`SELECT `+articleColumns+` FROM articles a WHERE a.id = ?`, id))
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

	var q strings.Builder
	q.WriteString(`SELECT ` + articleColumns + ` FROM articles a WHERE a.id > ?`)
	args := []any{f.AfterID}
	if f.Source != "" {
		q.WriteString(` AND a.source = ?`)
		args = append(args, f.Source)
	}
	if f.Tag != "" {
		q.WriteString(` AND EXISTS (SELECT 1 FROM article_tags t WHERE t.article_id = a.id AND t.tag = ?)`)
		args = append(args, strings.ToLower(strings.TrimSpace(f.Tag)))
	}
	if !f.Since.IsZero() {
		q.WriteString(` AND a.published_at >= ?`)
		args = append(args, f.Since.UnixMilli())
	}
	q.WriteString(` ORDER BY a.id LIMIT ?`)
	args = append(args, limit)

	rows, err := db.reader.QueryContext(ctx, q.String(), args...)
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

func scanFeed(row scanner) (*articles.FeedState, error) {
	var (
		s                articles.FeedState
		fetched, success sql.NullInt64
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
	s, err := scanFeed(db.reader.QueryRowContext(ctx, `SELECT `+feedColumns+` FROM feeds WHERE url = ?`, url))
	if err != nil {
		return nil, translate(err, "find feed", "feed")
	}
	return s, nil
}

// FindFeeds returns the state of every feed ever polled, by URL.
func (db *DB) FindFeeds(ctx context.Context) ([]articles.FeedState, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+feedColumns+` FROM feeds ORDER BY url`)
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

// articleTx implements articles.Tx on a write transaction.
type articleTx struct {
	ctx context.Context
	tx  *sql.Tx
}

// ArticleByURL returns the article with that URL, or ENOTFOUND.
func (t *articleTx) ArticleByURL(url string) (*articles.Article, error) {
	a, err := scanArticle(t.tx.QueryRowContext(t.ctx,
		`SELECT `+articleColumns+` FROM articles a WHERE a.url = ?`, url))
	if err != nil {
		return nil, translate(err, "article by url", "article")
	}
	return a, nil
}

// ArticleByGUID returns the newest article with that source and GUID, or
// ENOTFOUND.
func (t *articleTx) ArticleByGUID(source, guid string) (*articles.Article, error) {
	a, err := scanArticle(t.tx.QueryRowContext(t.ctx,
		`SELECT `+articleColumns+` FROM articles a WHERE a.guid = ? AND a.source = ? AND a.guid <> ''
         ORDER BY a.id DESC LIMIT 1`, guid, source))
	if err != nil {
		return nil, translate(err, "article by guid", "article")
	}
	return a, nil
}

// CreateArticle inserts a with its tags and sets a.ID. ECONFLICT when its
// URL exists.
func (t *articleTx) CreateArticle(a *articles.Article) error {
	res, err := t.tx.ExecContext(t.ctx, `INSERT INTO articles
        (url, guid, source, title, author, summary, content_html, content_text, excerpt,
         image_url, image_alt, hash, published_at, updated_at, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.URL, a.GUID, a.Source, a.Title, a.Author, a.Summary, a.ContentHTML, a.ContentText, a.Excerpt,
		a.ImageURL, a.ImageAlt, a.Hash, encTimeNN(a.PublishedAt), encTimeNN(a.UpdatedAt), encTimeNN(a.CreatedAt))
	if err != nil {
		return translate(err, "create article", "article")
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("create article: %w", err)
	}
	if err := t.addTags(id, a.Tags); err != nil {
		return fmt.Errorf("create article: %w", err)
	}
	a.ID = id
	return nil
}

// UpdateArticle overwrites every field of the article a.ID but ID and
// CreatedAt, and replaces its tags. ENOTFOUND when a.ID does not exist;
// ECONFLICT when its new URL belongs to another article.
func (t *articleTx) UpdateArticle(a *articles.Article) error {
	op := fmt.Sprintf("update article %d", a.ID)
	res, err := t.tx.ExecContext(t.ctx, `UPDATE articles
        SET url = ?, guid = ?, source = ?, title = ?, author = ?, summary = ?, content_html = ?,
            content_text = ?, excerpt = ?, image_url = ?, image_alt = ?, hash = ?,
            published_at = ?, updated_at = ?
        WHERE id = ?`,
		a.URL, a.GUID, a.Source, a.Title, a.Author, a.Summary, a.ContentHTML,
		a.ContentText, a.Excerpt, a.ImageURL, a.ImageAlt, a.Hash,
		encTimeNN(a.PublishedAt), encTimeNN(a.UpdatedAt), a.ID)
	if err != nil {
		return translate(err, op, "article")
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		return notFound(op, "article")
	}
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM article_tags WHERE article_id = ?`, a.ID); err != nil {
		return translate(err, op, "article")
	}
	if err := t.addTags(a.ID, a.Tags); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (t *articleTx) addTags(id int64, tags []string) error {
	for _, tag := range tags {
		if tag == "" {
			continue
		}
		if _, err := t.tx.ExecContext(t.ctx,
			`INSERT OR IGNORE INTO article_tags (article_id, tag) VALUES (?, ?)`, id, tag); err != nil {
			return translate(err, "add tag", "tag")
		}
	}
	return nil
}

// SaveFeed creates or replaces the state of the feed s.URL.
func (t *articleTx) SaveFeed(s articles.FeedState) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO feeds (`+feedColumns+`)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
            last_fetched_at = excluded.last_fetched_at, last_success_at = excluded.last_success_at,
            last_error = excluded.last_error, consecutive_failures = excluded.consecutive_failures,
            articles_seen = excluded.articles_seen`,
		s.URL, s.ETag, s.LastModified, encTime(s.LastFetchedAt), encTime(s.LastSuccessAt), s.LastError,
		s.ConsecutiveFailures, s.ArticlesSeen)
	if err != nil {
		return translate(err, "save feed", "feed")
	}
	return nil
}
