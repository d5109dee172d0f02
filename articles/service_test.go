package articles_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"herald"
	"herald/articles"
	"herald/store/sqlite"
)

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openDB opens and migrates a new SQLite file under t.TempDir().
func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func newService(t *testing.T) (*articles.Service, *sqlite.DB, *clock) {
	t.Helper()
	db := openDB(t)
	c := newClock()
	return articles.NewService(db, articles.Options{Now: c.Now}), db, c
}

func story() articles.Article {
	return articles.Article{
		URL: "https://ledger.example/2026/03/story/", Title: "The Story", Author: "A. Reporter",
		PublishedAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Summary: "What happened.",
		ContentHTML: `<p onclick="x()">Body <a href="/more">more</a></p><script>bad()</script>`,
		Tags:        []string{"UN"}, Source: articles.SourceAPI,
	}
}

func upsert(t *testing.T, s *articles.Service, a articles.Article, wantCreated, wantChanged bool) {
	t.Helper()
	created, changed, err := s.Upsert(t.Context(), a)
	if err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if created != wantCreated || changed != wantChanged {
		t.Fatalf("Upsert = created %v, changed %v; want %v, %v", created, changed, wantCreated, wantChanged)
	}
}

func only(t *testing.T, s *articles.Service) *articles.Article {
	t.Helper()
	as, err := s.List(t.Context(), articles.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 {
		t.Fatalf("%d articles, want 1", len(as))
	}
	return as[0]
}

func TestUpsertIdempotentAndEdits(t *testing.T) {
	s, _, c := newService(t)
	upsert(t, s, story(), true, false)
	first := only(t, s)
	if strings.Contains(first.ContentHTML, "script") || strings.Contains(first.ContentHTML, "onclick") ||
		!strings.Contains(first.ContentHTML, `href="https://ledger.example/more"`) {
		t.Fatalf("stored content not sanitised: %s", first.ContentHTML)
	}
	if !first.CreatedAt.Equal(c.Now()) || !first.UpdatedAt.Equal(first.PublishedAt) {
		t.Fatalf("CreatedAt %v, UpdatedAt %v", first.CreatedAt, first.UpdatedAt)
	}

	// The same article again, later: nothing changes, nothing is written.
	c.Add(time.Hour)
	upsert(t, s, story(), false, false)
	if again := only(t, s); again.UpdatedAt != first.UpdatedAt || again.Hash != first.Hash {
		t.Fatalf("re-upsert touched the row: %+v", again)
	}

	// An edited title is a change, and bumps UpdatedAt.
	c.Add(time.Hour)
	edited := story()
	edited.Title = "The Story, Updated"
	upsert(t, s, edited, false, true)
	got := only(t, s)
	if got.ID != first.ID || got.Title != "The Story, Updated" || !got.UpdatedAt.Equal(c.Now()) ||
		!got.CreatedAt.Equal(first.CreatedAt) || got.Hash == first.Hash {
		t.Fatalf("after edit: %+v", got)
	}
	byID, err := s.Get(t.Context(), got.ID)
	if err != nil || byID.Title != got.Title {
		t.Fatalf("Get = %+v, %v", byID, err)
	}
	if _, err := s.Get(t.Context(), got.ID+1); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Fatalf("Get(missing) = %v, want ENOTFOUND", err)
	}
}

func TestUpsertUndatedKeepsDate(t *testing.T) {
	s, _, c := newService(t)
	a := story()
	a.PublishedAt = time.Time{}
	upsert(t, s, a, true, false)
	first := only(t, s)
	if !first.PublishedAt.Equal(c.Now()) {
		t.Fatalf("PublishedAt = %v, want now %v", first.PublishedAt, c.Now())
	}
	c.Add(24 * time.Hour)
	upsert(t, s, a, false, false)
	if got := only(t, s); !got.PublishedAt.Equal(first.PublishedAt) {
		t.Fatalf("PublishedAt moved to %v", got.PublishedAt)
	}
}

func TestUpsertByGUIDWhenURLChanges(t *testing.T) {
	s, _, _ := newService(t)
	a := story()
	a.Source, a.GUID = "https://ledger.example/feed/", "post-77"
	upsert(t, s, a, true, false)
	first := only(t, s)

	a.URL = "https://ledger.example/2026/03/story-renamed/"
	upsert(t, s, a, false, true)
	got := only(t, s)
	if got.ID != first.ID || got.URL != a.URL {
		t.Fatalf("after URL change: id %d url %s; want id %d", got.ID, got.URL, first.ID)
	}

	// The same GUID from another feed is another article.
	b := a
	b.Source, b.URL = "https://other.example/feed/", "https://other.example/post-77"
	upsert(t, s, b, true, false)
}

func TestUpsertInvalid(t *testing.T) {
	s, _, _ := newService(t)
	a := story()
	a.URL = "ledger.example/story"
	_, _, err := s.Upsert(t.Context(), a)
	if !herald.IsCode(err, herald.EINVALID) || herald.ErrorMessage(err) != "url: must be an absolute http or https URL" {
		t.Fatalf("Upsert = %v", err)
	}
	a = story()
	a.Title = ""
	if _, _, err := s.Upsert(t.Context(), a); herald.ErrorMessage(err) != "title: is required" {
		t.Fatalf("Upsert = %v", err)
	}
}

func TestUpsertMany(t *testing.T) {
	s, _, _ := newService(t)
	var in []articles.Article
	for i := range 1203 {
		a := story()
		a.URL = fmt.Sprintf("https://ledger.example/p/%d", i)
		in = append(in, a)
	}
	in[5].Title = ""
	res, err := s.UpsertMany(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for i, r := range res {
		if i == 5 {
			if !herald.IsCode(r.Err, herald.EINVALID) {
				t.Fatalf("result 5: %+v", r)
			}
			continue
		}
		if r.Err != nil || !r.Created || r.ID == 0 {
			t.Fatalf("result %d: %+v", i, r)
		}
		created++
	}
	if created != 1202 {
		t.Fatalf("created %d", created)
	}
	res, err = s.UpsertMany(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if i != 5 && (r.Created || r.Changed || r.Err != nil) {
			t.Fatalf("second run, result %d: %+v", i, r)
		}
	}
}

func TestList(t *testing.T) {
	s, _, _ := newService(t)
	a, b := story(), story()
	b.URL, b.Tags, b.Source = "https://ledger.example/other/", []string{"climate"}, "file:b.md"
	b.PublishedAt = a.PublishedAt.Add(time.Hour)
	upsert(t, s, a, true, false)
	upsert(t, s, b, true, false)
	for _, tt := range []struct {
		f    articles.Filter
		want int
	}{
		{articles.Filter{}, 2},
		{articles.Filter{Tag: "un"}, 1},
		{articles.Filter{Source: "file:b.md"}, 1},
		{articles.Filter{Since: b.PublishedAt}, 1},
		{articles.Filter{Limit: 1}, 1},
	} {
		got, err := s.List(t.Context(), tt.f)
		if err != nil || len(got) != tt.want {
			t.Errorf("List(%+v) = %d articles, %v; want %d", tt.f, len(got), err, tt.want)
		}
	}
}

func TestImportFilesTwice(t *testing.T) {
	s, _, _ := newService(t)
	dir := t.TempDir()
	for _, name := range []string{"rss.xml", "atom.xml", "feed.json", "article.md", "article.html"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.md"), []byte("no front matter"), 0o600); err != nil {
		t.Fatal(err)
	}
	im := &articles.Importer{Service: s}
	run := func() (created, updated, unchanged, failed int) {
		err := im.Import(t.Context(), []string{dir, filepath.Join(dir, "missing.md")}, func(r articles.ImportResult) {
			created += r.Created
			updated += r.Updated
			unchanged += r.Unchanged
			if r.Err != nil {
				failed++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	// rss.xml: 2 items (1 skipped), atom 1, json 1, md 1, html 1.
	if c, u, n, f := run(); c != 6 || u != 0 || n != 0 || f != 2 {
		t.Fatalf("first import: created %d updated %d unchanged %d failed %d", c, u, n, f)
	}
	if c, u, n, f := run(); c != 0 || u != 0 || n != 6 || f != 2 {
		t.Fatalf("second import: created %d updated %d unchanged %d failed %d", c, u, n, f)
	}
	as, err := s.List(t.Context(), articles.Filter{Source: "file:article.md"})
	if err != nil || len(as) != 1 {
		t.Fatalf("List by file source: %d, %v", len(as), err)
	}
}
