package sqlite_test

import (
	"strings"
	"testing"

	"herald/articles"
	"herald/store/storetest"
)

func TestArticlesContract(t *testing.T) {
	storetest.RunArticles(t, func(t *testing.T) articles.Store { return open(t) })
}

// TestArticleQueriesUseIndexes checks the plans of the lookups an upsert and
// a digest make, so that a growing archive never turns them into scans.
func TestArticleQueriesUseIndexes(t *testing.T) {
	db := open(t)
	tests := []struct {
		name, query, index string
		args               []any
	}{
		{"by url", `SELECT id FROM articles WHERE url = ?`, "sqlite_autoindex_articles_1", []any{"x"}},
		{"by guid", `SELECT id FROM articles WHERE guid = ? AND source = ? AND guid <> '' ORDER BY id DESC LIMIT 1`,
			"articles_guid", []any{"g", "s"}},
		{"since", `SELECT id FROM articles WHERE published_at >= ?`, "articles_published", []any{0}},
		{"tag", `SELECT article_id FROM article_tags WHERE tag = ?`, "article_tags_tag", []any{"un"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := db.Explain(t.Context(), tt.query, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan, tt.index) {
				t.Errorf("plan does not use %s:\n%s", tt.index, plan)
			}
		})
	}
}
