package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"herald"
	"herald/articles"
)

// RunArticles runs the contract suite of articles.Store. open must return a
// new, migrated, empty store for each call, and arrange its own cleanup.
func RunArticles(t *testing.T, open func(t *testing.T) articles.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s articles.Store)
	}{
		{"CreateFindArticle", testCreateFindArticle},
		{"DuplicateURLConflict", testDuplicateURL},
		{"ArticleNotFound", testArticleNotFound},
		{"ArticleByGUID", testArticleByGUID},
		{"UpdateArticle", testUpdateArticle},
		{"UpdateArticleURLConflict", testUpdateArticleURLConflict},
		{"FindArticlesFilter", testFindArticlesFilter},
		{"FindArticlesPaging", testFindArticlesPaging},
		{"UpdateArticlesRollback", testUpdateArticlesRollback},
		{"Feeds", testFeeds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

func updateArticles(t *testing.T, s articles.Store, fn func(tx articles.Tx) error) {
	t.Helper()
	if err := s.UpdateArticles(t.Context(), fn); err != nil {
		t.Fatalf("UpdateArticles: %v", err)
	}
}

// newArticle returns a complete article at https://news.example/<slug>.
func newArticle(slug string, published time.Time, tags ...string) *articles.Article {
	return &articles.Article{
		URL: "https://news.example/" + slug, GUID: "guid-" + slug, Title: "Title " + slug,
		Author: "Reporter", PublishedAt: published, UpdatedAt: published,
		Summary: "Summary of " + slug, ContentHTML: "<p>Body of " + slug + "</p>",
		ContentText: "Body of " + slug, Excerpt: "Summary of " + slug,
		ImageURL: "https://news.example/" + slug + ".jpg", ImageAlt: "A picture",
		Tags: tags, Source: "https://news.example/feed", CreatedAt: base(), Hash: "hash-" + slug,
	}
}

func createArticles(t *testing.T, s articles.Store, as ...*articles.Article) {
	t.Helper()
	updateArticles(t, s, func(tx articles.Tx) error {
		for _, a := range as {
			if err := tx.CreateArticle(a); err != nil {
				return fmt.Errorf("create %s: %w", a.URL, err)
			}
		}
		return nil
	})
}

func equalArticle(t *testing.T, got, want *articles.Article) {
	t.Helper()
	if got.ID != want.ID || got.URL != want.URL || got.GUID != want.GUID || got.Source != want.Source ||
		got.Title != want.Title || got.Author != want.Author || got.Summary != want.Summary ||
		got.ContentHTML != want.ContentHTML || got.ContentText != want.ContentText ||
		got.Excerpt != want.Excerpt || got.ImageURL != want.ImageURL || got.ImageAlt != want.ImageAlt ||
		got.Hash != want.Hash || !slices.Equal(got.Tags, want.Tags) ||
		!got.PublishedAt.Equal(want.PublishedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) ||
		!got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("article\n got %+v\nwant %+v", got, want)
	}
	for _, tm := range []time.Time{got.PublishedAt, got.UpdatedAt, got.CreatedAt} {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Fatalf("time %v is not UTC", tm)
		}
	}
}

func articleIDs(as []*articles.Article) []int64 {
	out := make([]int64, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func findArticles(t *testing.T, s articles.Store, f articles.Filter) []int64 {
	t.Helper()
	got, err := s.FindArticles(t.Context(), f)
	if err != nil {
		t.Fatalf("FindArticles(%+v): %v", f, err)
	}
	return articleIDs(got)
}

func testCreateFindArticle(t *testing.T, s articles.Store) {
	a := newArticle("one", at(-time.Hour), "peacekeeping", "security council")
	createArticles(t, s, a)
	if a.ID == 0 {
		t.Fatal("CreateArticle did not set ID")
	}
	got, err := s.FindArticleByID(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalArticle(t, got, a)

	// Inside a transaction, by URL and by GUID.
	updateArticles(t, s, func(tx articles.Tx) error {
		got, err := tx.ArticleByURL(a.URL)
		if err != nil {
			return err
		}
		equalArticle(t, got, a)
		got, err = tx.ArticleByGUID(a.Source, a.GUID)
		if err != nil {
			return err
		}
		equalArticle(t, got, a)
		return nil
	})

	// No tags reads back as nil; a millisecond survives the round trip.
	b := newArticle("two", at(1500*time.Millisecond))
	createArticles(t, s, b)
	got, err = s.FindArticleByID(t.Context(), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalArticle(t, got, b)
}

func testDuplicateURL(t *testing.T, s articles.Store) {
	createArticles(t, s, newArticle("dup", base()))
	err := s.UpdateArticles(t.Context(), func(tx articles.Tx) error {
		return tx.CreateArticle(newArticle("dup", base()))
	})
	wantCode(t, err, herald.ECONFLICT)
}

func testArticleNotFound(t *testing.T, s articles.Store) {
	_, err := s.FindArticleByID(t.Context(), 42)
	wantCode(t, err, herald.ENOTFOUND)
	_, err = s.FindFeed(t.Context(), "https://nowhere.example/feed")
	wantCode(t, err, herald.ENOTFOUND)
	updateArticles(t, s, func(tx articles.Tx) error {
		_, err := tx.ArticleByURL("https://news.example/missing")
		wantCode(t, err, herald.ENOTFOUND)
		_, err = tx.ArticleByGUID("https://news.example/feed", "missing")
		wantCode(t, err, herald.ENOTFOUND)
		a := newArticle("missing", base())
		a.ID = 42
		wantCode(t, tx.UpdateArticle(a), herald.ENOTFOUND)
		return nil
	})
}

func testArticleByGUID(t *testing.T, s articles.Store) {
	a := newArticle("a", base())
	a.GUID = "42"
	b := newArticle("b", base())
	b.GUID, b.Source = "42", "https://other.example/feed"
	c := newArticle("c", base())
	c.GUID = "" // no GUID: never found by an empty GUID
	createArticles(t, s, a, b, c)
	updateArticles(t, s, func(tx articles.Tx) error {
		got, err := tx.ArticleByGUID(a.Source, "42")
		if err != nil {
			return err
		}
		if got.ID != a.ID {
			t.Errorf("ArticleByGUID(%s) = %d, want %d (GUIDs are per source)", a.Source, got.ID, a.ID)
		}
		got, err = tx.ArticleByGUID(b.Source, "42")
		if err != nil {
			return err
		}
		if got.ID != b.ID {
			t.Errorf("ArticleByGUID(%s) = %d, want %d", b.Source, got.ID, b.ID)
		}
		_, err = tx.ArticleByGUID(c.Source, "")
		wantCode(t, err, herald.ENOTFOUND)
		return nil
	})
}

func testUpdateArticle(t *testing.T, s articles.Store) {
	a := newArticle("edit", base(), "a", "b")
	createArticles(t, s, a)
	created := a.CreatedAt
	a.URL = "https://news.example/edited"
	a.Title, a.Summary, a.ContentHTML, a.Hash = "New title", "New summary", "<p>New</p>", "hash-2"
	a.Tags = []string{"b", "c"}
	a.UpdatedAt = at(time.Hour)
	a.CreatedAt = at(time.Hour) // ignored: creation time is kept
	updateArticles(t, s, func(tx articles.Tx) error { return tx.UpdateArticle(a) })
	got, err := s.FindArticleByID(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	a.CreatedAt = created
	equalArticle(t, got, a)
	// Tags were replaced, and the tag index followed.
	if ids := findArticles(t, s, articles.Filter{Tag: "a"}); len(ids) != 0 {
		t.Fatalf("tag a still finds %v", ids)
	}
	if ids := findArticles(t, s, articles.Filter{Tag: "c"}); !slices.Equal(ids, []int64{a.ID}) {
		t.Fatalf("tag c finds %v, want [%d]", ids, a.ID)
	}
}

func testUpdateArticleURLConflict(t *testing.T, s articles.Store) {
	a, b := newArticle("a", base()), newArticle("b", base())
	createArticles(t, s, a, b)
	b.URL = a.URL
	err := s.UpdateArticles(t.Context(), func(tx articles.Tx) error { return tx.UpdateArticle(b) })
	wantCode(t, err, herald.ECONFLICT)
}

func testFindArticlesFilter(t *testing.T, s articles.Store) {
	a := newArticle("a", at(-48*time.Hour), "un", "climate")
	b := newArticle("b", at(-time.Hour), "un")
	c := newArticle("c", at(0), "climate")
	c.Source = "api"
	d := newArticle("d", at(time.Hour))
	d.Source = "file:d.md"
	createArticles(t, s, a, b, c, d)

	tests := []struct {
		name string
		f    articles.Filter
		want []int64
	}{
		{"all", articles.Filter{}, []int64{a.ID, b.ID, c.ID, d.ID}},
		{"source", articles.Filter{Source: a.Source}, []int64{a.ID, b.ID}},
		{"tag", articles.Filter{Tag: "climate"}, []int64{a.ID, c.ID}},
		{"tag any case", articles.Filter{Tag: " UN "}, []int64{a.ID, b.ID}},
		{"since inclusive", articles.Filter{Since: at(-time.Hour)}, []int64{b.ID, c.ID, d.ID}},
		{"since and tag", articles.Filter{Since: at(-time.Hour), Tag: "climate"}, []int64{c.ID}},
		{"source api", articles.Filter{Source: "api"}, []int64{c.ID}},
		{"unknown tag", articles.Filter{Tag: "sports"}, []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := findArticles(t, s, tt.f); !slices.Equal(got, tt.want) {
				t.Fatalf("FindArticles(%+v) = %v, want %v", tt.f, got, tt.want)
			}
		})
	}
}

func testFindArticlesPaging(t *testing.T, s articles.Store) {
	var all []*articles.Article
	for i := range 7 {
		all = append(all, newArticle(fmt.Sprintf("p%d", i), at(time.Duration(i)*time.Minute)))
	}
	createArticles(t, s, all...)
	var got []int64
	var after int64
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page := findArticles(t, s, articles.Filter{AfterID: after, Limit: 3})
		if len(page) == 0 {
			break
		}
		if len(page) > 3 {
			t.Fatalf("page of %d, limit 3", len(page))
		}
		got = append(got, page...)
		after = page[len(page)-1]
	}
	if want := articleIDs(all); !slices.Equal(got, want) {
		t.Fatalf("paged ids %v, want %v", got, want)
	}
}

func testUpdateArticlesRollback(t *testing.T, s articles.Store) {
	boom := errors.New("boom")
	err := s.UpdateArticles(t.Context(), func(tx articles.Tx) error {
		if err := tx.CreateArticle(newArticle("gone", base())); err != nil {
			return err
		}
		if err := tx.SaveFeed(articles.FeedState{URL: "https://news.example/feed"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateArticles = %v, want fn's error", err)
	}
	if ids := findArticles(t, s, articles.Filter{}); len(ids) != 0 {
		t.Fatalf("articles after rollback: %v", ids)
	}
	if fs, err := s.FindFeeds(t.Context()); err != nil || len(fs) != 0 {
		t.Fatalf("feeds after rollback: %v, %v", fs, err)
	}
}

func testFeeds(t *testing.T, s articles.Store) {
	ok := articles.FeedState{
		URL: "https://b.example/feed", ETag: `"v1"`, LastModified: "Sun, 01 Mar 2026 11:00:00 GMT",
		LastFetchedAt: base(), LastSuccessAt: base(), ArticlesSeen: 12,
	}
	failing := articles.FeedState{
		URL: "https://a.example/feed", LastFetchedAt: base(), LastError: "HTTP 500 Internal Server Error",
		ConsecutiveFailures: 3,
	}
	updateArticles(t, s, func(tx articles.Tx) error {
		if err := tx.SaveFeed(ok); err != nil {
			return err
		}
		return tx.SaveFeed(failing)
	})
	got, err := s.FindFeed(t.Context(), ok.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !equalFeed(*got, ok) {
		t.Fatalf("FindFeed\n got %+v\nwant %+v", *got, ok)
	}
	// Saving again replaces every field.
	ok.ETag, ok.LastError, ok.ConsecutiveFailures, ok.LastFetchedAt = `"v2"`, "timed out after 20s", 1, at(time.Hour)
	updateArticles(t, s, func(tx articles.Tx) error { return tx.SaveFeed(ok) })
	all, err := s.FindFeeds(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []articles.FeedState{failing, ok}; !slices.EqualFunc(all, want, equalFeed) {
		t.Fatalf("FindFeeds\n got %+v\nwant %+v", all, want)
	}
}

func equalFeed(a, b articles.FeedState) bool {
	return a.URL == b.URL && a.ETag == b.ETag && a.LastModified == b.LastModified &&
		a.LastFetchedAt.Equal(b.LastFetchedAt) && a.LastSuccessAt.Equal(b.LastSuccessAt) &&
		a.LastError == b.LastError && a.ConsecutiveFailures == b.ConsecutiveFailures &&
		a.ArticlesSeen == b.ArticlesSeen
}
