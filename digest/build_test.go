package digest_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"herald/articles"
	"herald/digest"
)

// now is the build time of the table tests.
var buildNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return buildNow.Add(-d) }

const (
	hour = time.Hour
	day  = 24 * time.Hour
)

// art is an article published at pub that Herald learned of at created.
func art(id int64, pub, created time.Time) *articles.Article {
	return &articles.Article{ID: id, Title: "t", PublishedAt: pub, CreatedAt: created, Source: articles.SourceAPI}
}

// fresh is an article published and learned of at the same time.
func fresh(id int64, pub time.Time) *articles.Article { return art(id, pub, pub) }

func ids(as []*articles.Article) []int64 {
	out := make([]int64, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func TestBuild(t *testing.T) {
	// twelve articles published an hour apart, the newest (12) an hour ago.
	twelve := make([]*articles.Article, 12)
	for i := range twelve {
		twelve[i] = fresh(int64(i+1), ago(time.Duration(12-i)*hour))
	}
	since := ago(2 * day) // a returning reader's last issue
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	springNow := time.Date(2026, 3, 8, 12, 0, 0, 0, ny) // 23-hour day

	tests := []struct {
		name  string
		n     digest.Newsletter
		since time.Time
		now   time.Time
		cands []*articles.Article
		want  []int64
	}{
		{"new reader gets the newest three", digest.Newsletter{}, time.Time{}, buildNow, twelve, []int64{12, 11, 10}},
		{"new reader: NewReaderArticles", digest.Newsletter{NewReaderArticles: 5}, time.Time{}, buildNow, twelve, []int64{12, 11, 10, 9, 8}},
		{"new reader: at most MaxArticles", digest.Newsletter{MaxArticles: 2, NewReaderArticles: 5}, time.Time{}, buildNow, twelve, []int64{12, 11}},
		{"new reader: fewer in the window", digest.Newsletter{}, time.Time{}, buildNow,
			[]*articles.Article{fresh(1, ago(40*day)), fresh(2, ago(29*day)), fresh(3, ago(31*day))}, []int64{2}},
		{"new reader: archive imports are old news too", digest.Newsletter{}, time.Time{}, buildNow,
			[]*articles.Article{art(1, ago(90*day), ago(hour)), fresh(2, ago(day))}, []int64{2}},
		{"returning reader capped at MaxArticles", digest.Newsletter{}, since, buildNow, twelve, []int64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3}},
		{"returning reader: custom cap", digest.Newsletter{MaxArticles: 4}, since, buildNow, twelve, []int64{12, 11, 10, 9}},
		{"returning reader gets only what is new", digest.Newsletter{}, since, buildNow,
			[]*articles.Article{fresh(1, ago(3*day)), fresh(2, ago(day)), fresh(3, since), fresh(4, since.Add(time.Millisecond))}, []int64{2, 4}},
		{"late-ingested: published before Since, learned of after", digest.Newsletter{}, since, buildNow,
			[]*articles.Article{art(1, since.Add(-47*hour), ago(hour)), art(2, since.Add(-2*hour), since.Add(time.Minute))}, []int64{2, 1}},
		{"archive import: published long before Since", digest.Newsletter{}, since, buildNow,
			[]*articles.Article{art(1, since.Add(-72*hour), ago(hour)), art(2, since.Add(-48*hour), ago(hour))}, nil},
		{"learned of before Since: already received", digest.Newsletter{}, since, buildNow,
			[]*articles.Article{art(1, ago(hour), since)}, nil},
		{"future article waits; a clock a little ahead is tolerated", digest.Newsletter{}, time.Time{}, buildNow,
			[]*articles.Article{fresh(1, buildNow.Add(10*time.Minute)), fresh(2, buildNow.Add(4*time.Minute)), fresh(3, ago(hour))}, []int64{2, 3}},
		{"future article, returning reader", digest.Newsletter{}, since, buildNow,
			[]*articles.Article{art(1, buildNow.Add(day), ago(hour))}, nil},
		{"nothing new", digest.Newsletter{}, ago(hour), buildNow, twelve[:11], nil},
		{"no candidates, new reader", digest.Newsletter{}, time.Time{}, buildNow, nil, nil},
		{"ties broken by id, highest first", digest.Newsletter{}, time.Time{}, buildNow,
			[]*articles.Article{fresh(5, ago(hour)), fresh(9, ago(hour)), fresh(7, ago(hour)), fresh(8, ago(2*hour))}, []int64{9, 7, 5}},
		{"back from a long pause: what is new, within Lookback, capped", digest.Newsletter{MaxArticles: 3}, ago(60 * day), buildNow,
			[]*articles.Article{fresh(1, ago(45*day)), fresh(2, ago(20*day)), fresh(3, ago(10*day)), fresh(4, ago(5*day)), fresh(5, ago(day))},
			[]int64{5, 4, 3}},
		{"custom Lookback", digest.Newsletter{Lookback: 2 * day}, time.Time{}, buildNow,
			[]*articles.Article{fresh(1, ago(3*day)), fresh(2, ago(day))}, []int64{2}},
		// Lookback is a duration, not calendar days: on the 23-hour day
		// of spring forward, 24 hours reach back to 11:00 the day before.
		{"Lookback across spring forward", digest.Newsletter{Lookback: day}, time.Time{}, springNow,
			[]*articles.Article{fresh(1, time.Date(2026, 3, 7, 11, 30, 0, 0, ny)), fresh(2, time.Date(2026, 3, 7, 10, 30, 0, 0, ny))},
			[]int64{1}},
		// 48 hours before 12:00 EDT on the 8th is 11:00 EST on the 6th.
		{"late ingest across spring forward: 48 hours, not two days", digest.Newsletter{}, springNow, springNow.Add(hour),
			[]*articles.Article{art(1, time.Date(2026, 3, 6, 10, 30, 0, 0, ny), springNow.Add(time.Minute)),
				art(2, time.Date(2026, 3, 6, 11, 30, 0, 0, ny), springNow.Add(time.Minute))},
			[]int64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.cands)
			got := digest.Build(tt.n, digest.Reader{SubscriberID: 1, Since: tt.since}, in, tt.now)
			if !slices.Equal(ids(got), tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Fatalf("Build = %v, want %v", ids(got), tt.want)
			}
			if !slices.Equal(in, tt.cands) {
				t.Fatal("Build reordered its input")
			}
			// The order of the candidates does not matter.
			r := rand.New(rand.NewPCG(1, 2))
			for range 5 {
				r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				if again := digest.Build(tt.n, digest.Reader{Since: tt.since}, in, tt.now); !slices.Equal(ids(again), ids(got)) {
					t.Fatalf("Build of shuffled candidates = %v, want %v", ids(again), ids(got))
				}
			}
		})
	}
}

func TestMatches(t *testing.T) {
	const feed = "https://news.example/feed.xml"
	withTags := digest.Newsletter{Feeds: []string{feed}, Tags: []string{"Climate", "un"}}
	noTags := digest.Newsletter{Feeds: []string{feed}}
	tests := []struct {
		name   string
		n      digest.Newsletter
		source string
		tags   []string
		want   bool
	}{
		{"its feed", withTags, feed, nil, true},
		{"another feed", withTags, "https://other.example/feed", nil, false},
		{"another feed, a tag of ours (case-insensitive)", withTags, "https://other.example/feed", []string{"climate"}, true},
		{"api, a tag of ours", withTags, articles.SourceAPI, []string{"un"}, true},
		{"api, no tag of ours: a tagged newsletter is picky", withTags, articles.SourceAPI, []string{"sport"}, false},
		{"file, no tags", withTags, "file:post.md", nil, false},
		{"untagged newsletter takes the api", noTags, articles.SourceAPI, nil, true},
		{"untagged newsletter takes files", noTags, "file:post.md", []string{"x"}, true},
		{"untagged newsletter, its feed", noTags, feed, nil, true},
		{"untagged newsletter, another feed", noTags, "https://other.example/feed", nil, false},
		{"no feeds, no tags", digest.Newsletter{}, "https://other.example/feed", nil, false},
	}
	for _, tt := range tests {
		a := &articles.Article{Source: tt.source, Tags: tt.tags}
		if got := tt.n.Matches(a); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// BenchmarkBuild: one reader, 1,000 candidates newest first.
func BenchmarkBuild(b *testing.B) {
	cands := make([]*articles.Article, 1000)
	for i := range cands {
		cands[i] = fresh(int64(1000-i), ago(time.Duration(i)*time.Minute))
	}
	for _, r := range []digest.Reader{{}, {Since: ago(5 * hour)}} {
		b.Run("since="+r.Since.Format(time.Kitchen), func(b *testing.B) {
			for b.Loop() {
				digest.Build(digest.Newsletter{}, r, cands, buildNow)
			}
		})
	}
}
