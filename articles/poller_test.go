package articles_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/articles"
)

const goodFeed = `<?xml version="1.0"?>
<rss version="2.0"><channel><title>Good</title><link>https://ledger.example/</link>
<item><title>First</title><link>/posts/1</link><guid>1</guid>
  <pubDate>Sun, 01 Mar 2026 09:00:00 +0000</pubDate><description>&lt;p&gt;One &lt;a href="/x"&gt;x&lt;/a&gt;&lt;/p&gt;</description></item>
<item><title>Second</title><link>/posts/2</link><guid>2</guid>
  <pubDate>Sun, 01 Mar 2026 10:00:00 +0000</pubDate><description>Two</description></item>
</channel></rss>`

// conditionalFeed serves goodFeed with validators and answers 304 when the
// client sends them back; it records the request headers it saw.
type conditionalFeed struct {
	mu      sync.Mutex
	headers []http.Header
}

func (f *conditionalFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	const etag, lastMod = `"v1"`, "Sun, 01 Mar 2026 10:00:00 GMT"
	if r.Header.Get("If-None-Match") == etag && r.Header.Get("If-Modified-Since") == lastMod {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Last-Modified", lastMod)
	w.Header().Set("Content-Type", "application/rss+xml")
	fmt.Fprint(w, goodFeed)
}

func (f *conditionalFeed) seen() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.headers
}

func TestPollConditionalGET(t *testing.T) {
	db := openDB(t)
	c := newClock()
	feed := &conditionalFeed{}
	srv := httptest.NewServer(feed)
	defer srv.Close()
	url := srv.URL + "/feed.xml"
	p := &articles.Poller{Store: db, Feeds: []articles.FeedConfig{{URL: url}}, Now: c.Now,
		UserAgent: articles.UserAgent("https://news.ledger.example")}

	res := p.PollOnce(t.Context())
	if len(res) != 1 || res[0].Err != nil || res[0].Created != 2 || res[0].NotModified {
		t.Fatalf("first poll: %+v", res)
	}
	st, err := db.FindFeed(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag != `"v1"` || st.LastModified != "Sun, 01 Mar 2026 10:00:00 GMT" || st.ArticlesSeen != 2 ||
		!st.LastSuccessAt.Equal(c.Now()) || st.Failing() {
		t.Fatalf("feed state after first poll: %+v", st)
	}
	as, err := db.FindArticles(t.Context(), articles.Filter{Source: url})
	if err != nil || len(as) != 2 {
		t.Fatalf("articles: %d, %v", len(as), err)
	}
	if as[0].URL != srv.URL+"/posts/1" || !strings.Contains(as[0].ContentHTML, `href="`+srv.URL+`/x"`) {
		t.Fatalf("relative links not resolved against the feed: %s %s", as[0].URL, as[0].ContentHTML)
	}

	c.Add(15 * time.Minute)
	res = p.PollOnce(t.Context())
	if res[0].Err != nil || !res[0].NotModified || res[0].Created+res[0].Updated+res[0].Unchanged != 0 {
		t.Fatalf("second poll: %+v", res)
	}
	h := feed.seen()
	if len(h) != 2 {
		t.Fatalf("%d requests", len(h))
	}
	if h[0].Get("If-None-Match") != "" || h[1].Get("If-None-Match") != `"v1"` ||
		h[1].Get("If-Modified-Since") != "Sun, 01 Mar 2026 10:00:00 GMT" {
		t.Fatalf("conditional headers: first %v, second %v", h[0], h[1])
	}
	if ua := h[0].Get("User-Agent"); ua != "Herald/1.0 (+https://news.ledger.example)" {
		t.Fatalf("User-Agent = %q", ua)
	}
	st, _ = db.FindFeed(t.Context(), url)
	if st.ETag != `"v1"` || !st.LastFetchedAt.Equal(c.Now()) || st.ArticlesSeen != 2 {
		t.Fatalf("feed state after 304: %+v", st)
	}
}

func TestPollFailuresDoNotStopOthers(t *testing.T) {
	db := openDB(t)
	c := newClock()
	done := make(chan struct{})
	var hops atomic.Int64
	mux := http.NewServeMux()
	mux.Handle("/good", &conditionalFeed{})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("/loop?hop=%d", hops.Add(1)), http.StatusFound)
	})
	mux.HandleFunc("/huge", serveHuge)
	mux.HandleFunc("/html", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<html><body>Not a feed at all</body></html>")
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "plain text, not XML")
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusNotFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(done)

	feeds := []struct{ path, reason string }{
		{"/slow", "timed out after 1s"},
		{"/loop", "too many redirects (more than 5)"},
		{"/huge", "feed is larger than 1 MiB"},
		{"/html", "not a feed"},
		{"/text", "not a feed"},
		{"/gone", "HTTP 404 Not Found"},
		{"/good", ""},
	}
	// A 1 MiB limit keeps the test quick under the race detector;
	// TestFetchDefaultLimit checks the default 10 MiB.
	p := &articles.Poller{Store: db, Now: c.Now, Timeout: time.Second, MaxBytes: 1 << 20}
	for _, f := range feeds {
		p.Feeds = append(p.Feeds, articles.FeedConfig{URL: srv.URL + f.path})
	}

	for round := 1; round <= 2; round++ {
		res := p.PollOnce(t.Context())
		for i, f := range feeds {
			r := res[i]
			if f.reason == "" {
				if r.Err != nil {
					t.Fatalf("round %d: good feed failed: %v", round, r.Err)
				}
				continue
			}
			var fe *articles.FetchError
			if !errors.As(r.Err, &fe) || !strings.HasPrefix(fe.Reason, f.reason) {
				t.Fatalf("round %d: %s: err %v, want reason %q", round, f.path, r.Err, f.reason)
			}
			st, err := db.FindFeed(t.Context(), srv.URL+f.path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(st.LastError, f.reason) || st.ConsecutiveFailures != round || !st.LastSuccessAt.IsZero() {
				t.Fatalf("round %d: %s: state %+v", round, f.path, st)
			}
		}
		if round == 1 && res[len(res)-1].Created != 2 {
			t.Fatalf("good feed: %+v", res[len(res)-1])
		}
		c.Add(time.Minute)
	}

	s := articles.NewService(db, articles.Options{})
	states, err := s.Feeds(t.Context())
	if err != nil || len(states) != len(feeds) {
		t.Fatalf("Feeds = %d, %v", len(states), err)
	}
	failing := 0
	for _, st := range states {
		if st.Failing() {
			failing++
		}
	}
	if failing != len(feeds)-1 {
		t.Fatalf("%d failing feeds, want %d", failing, len(feeds)-1)
	}
}

// serveHuge streams a 50 MB feed, stopping when the client goes away.
func serveHuge(w http.ResponseWriter, r *http.Request) {
	fmt.Fprint(w, `<?xml version="1.0"?><rss version="2.0"><channel><item><title>big</title><description>`)
	chunk := []byte(strings.Repeat("a", 64<<10))
	for written := 0; written < 50<<20; written += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func TestFetchDefaultLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(serveHuge))
	defer srv.Close()
	_, err := (&articles.Fetcher{}).Fetch(t.Context(), srv.URL, "", "")
	var fe *articles.FetchError
	if !errors.As(err, &fe) || fe.Reason != "feed is larger than 10 MiB" {
		t.Fatalf("Fetch = %v, want \"feed is larger than 10 MiB\"", err)
	}
}

func TestPollerRun(t *testing.T) {
	db := openDB(t)
	feed := &conditionalFeed{}
	srv := httptest.NewServer(feed)
	defer srv.Close()
	p := &articles.Poller{Store: db, Feeds: []articles.FeedConfig{{URL: srv.URL}}, Interval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(feed.seen()) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not poll three times")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestImportURL(t *testing.T) {
	s, _, _ := newService(t)
	srv := httptest.NewServer(&conditionalFeed{})
	defer srv.Close()
	im := &articles.Importer{Service: s}
	var got []articles.ImportResult
	if err := im.Import(t.Context(), []string{srv.URL + "/feed"}, func(r articles.ImportResult) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Err != nil || got[0].Created != 2 {
		t.Fatalf("import: %+v", got)
	}
}
