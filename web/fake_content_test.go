package web

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"herald"
	"herald/articles"
	"herald/digest"
)

// fakeArticles stands in for the articles service: a map by URL behind the
// real Normalizer, so that validation messages are the service's own.
type fakeArticles struct {
	mu       sync.Mutex
	norm     *articles.Normalizer
	byURL    map[string]*articles.Article
	nextID   int64
	received []articles.Article // as the handler passed them, before normalising
	upserts  int
	err      error // returned by UpsertMany when set
	now      time.Time
}

func newFakeArticles() *fakeArticles {
	return &fakeArticles{
		norm:  articles.NewNormalizer(),
		byURL: map[string]*articles.Article{},
		now:   time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC),
	}
}

func (f *fakeArticles) Normalizer() *articles.Normalizer { return f.norm }

func (f *fakeArticles) UpsertMany(_ context.Context, as []articles.Article) ([]articles.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upserts++
	if f.err != nil {
		return nil, f.err
	}
	out := make([]articles.Result, len(as))
	for i, a := range as {
		f.received = append(f.received, a)
		out[i].URL = a.URL
		if err := f.norm.Normalize(&a); err != nil {
			out[i].Err = err
			continue
		}
		old, ok := f.byURL[a.URL]
		switch {
		case !ok:
			f.nextID++
			a.ID = f.nextID
			if a.PublishedAt.IsZero() {
				a.PublishedAt = f.now
			}
			if a.UpdatedAt.IsZero() {
				a.UpdatedAt = a.PublishedAt
			}
			a.Hash = a.ComputeHash()
			f.byURL[a.URL] = &a
			out[i].Created = true
		case old.Hash == a.ComputeHash():
		default:
			a.ID, a.UpdatedAt = old.ID, f.now.Add(time.Hour)
			a.Hash = a.ComputeHash()
			f.byURL[a.URL] = &a
			out[i].Changed = true
		}
		out[i].URL, out[i].ID = a.URL, f.byURL[a.URL].ID
	}
	return out, nil
}

func (f *fakeArticles) Get(_ context.Context, id int64) (*articles.Article, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.byURL {
		if a.ID == id {
			cp := *a
			return &cp, nil
		}
	}
	return nil, herald.Errorf(herald.ENOTFOUND, "No article %d.", id)
}

func (f *fakeArticles) lastReceived() articles.Article {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received[len(f.received)-1]
}

// fakeDigests stands in for the digest service: issues and their articles
// from fixed tables.
type fakeDigests struct {
	mu          sync.Mutex
	newsletters []digest.Newsletter
	issues      map[int64]*digest.Issue
	progress    map[int64]digest.Progress
	articles    map[int64][]*articles.Article // by issue id
	nothingNew  bool                          // SendNow answers ECONFLICT
	sent        []string                      // newsletter ids passed to SendNow
	filters     []digest.IssueFilter
	nextID      int64
}

func newFakeDigests() *fakeDigests {
	ny, err := digest.ParseSchedule("0 7 * * 1-5", "America/New_York")
	if err != nil {
		panic(err)
	}
	weekly, err := digest.ParseSchedule("0 9 * * 6", "")
	if err != nil {
		panic(err)
	}
	return &fakeDigests{
		newsletters: []digest.Newsletter{
			{ID: "daily", Name: "The Daily Brief", Description: "The UN in five minutes.", Schedule: ny},
			{ID: "weekly", Name: "The Week at the UN", Description: "Our best reporting.", Schedule: weekly},
		},
		issues:   map[int64]*digest.Issue{},
		progress: map[int64]digest.Progress{},
		articles: map[int64][]*articles.Article{},
		nextID:   100,
	}
}

// addIssue stores a sent issue with the given articles.
func (f *fakeDigests) addIssue(iss *digest.Issue, as ...*articles.Article) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issues[iss.ID] = iss
	f.articles[iss.ID] = as
}

func (f *fakeDigests) StartNow(_ context.Context, newsletterID string) (*digest.Issue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, newsletterID)
	known := false
	for _, nl := range f.newsletters {
		known = known || nl.ID == newsletterID
	}
	if !known {
		return nil, herald.Errorf(herald.ENOTFOUND, "There is no newsletter %q.", newsletterID)
	}
	if f.nothingNew {
		return nil, herald.Errorf(herald.ECONFLICT, "Nothing new to send: every reader has had every article.")
	}
	f.nextID++
	iss := &digest.Issue{ID: f.nextID, NewsletterID: newsletterID, Manual: true, Status: digest.IssueSending,
		CreatedAt: time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)}
	f.issues[iss.ID] = iss
	return iss, nil
}

func (f *fakeDigests) Issue(_ context.Context, id int64) (*digest.Issue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	iss, ok := f.issues[id]
	if !ok {
		return nil, herald.Errorf(herald.ENOTFOUND, "There is no issue %d.", id)
	}
	cp := *iss
	return &cp, nil
}

func (f *fakeDigests) Progress(_ context.Context, id int64) (digest.Progress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.issues[id]; !ok {
		return digest.Progress{}, herald.Errorf(herald.ENOTFOUND, "There is no issue %d.", id)
	}
	return f.progress[id], nil
}

// Follow returns the issue as stored and its progress: the fake settles
// nothing (the real service's settling is tested in issues_api_test.go).
func (f *fakeDigests) Follow(ctx context.Context, iss *digest.Issue) (*digest.Issue, digest.Progress, error) {
	cur, err := f.Issue(ctx, iss.ID)
	if err != nil {
		return nil, digest.Progress{}, err
	}
	p, err := f.Progress(ctx, iss.ID)
	return cur, p, err
}

func (f *fakeDigests) Issues(_ context.Context, flt digest.IssueFilter) ([]*digest.Issue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	var out []*digest.Issue
	for _, iss := range f.issues {
		if flt.NewsletterID != "" && iss.NewsletterID != flt.NewsletterID {
			continue
		}
		if flt.BeforeID != 0 && iss.ID >= flt.BeforeID {
			continue
		}
		if len(flt.Statuses) > 0 && !slices.Contains(flt.Statuses, iss.Status) {
			continue
		}
		cp := *iss
		out = append(out, &cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	if flt.Limit > 0 && len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, nil
}

func (f *fakeDigests) IssueArticles(_ context.Context, iss *digest.Issue) ([]*articles.Article, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.articles[iss.ID], nil
}

func (f *fakeDigests) Newsletters() []digest.Newsletter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]digest.Newsletter(nil), f.newsletters...)
}
