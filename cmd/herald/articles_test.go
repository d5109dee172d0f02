package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// fixtures are the articles package's test files, shared rather than copied.
const fixtures = "../../articles/testdata"

// copyFixture copies the fixture name into dir.
func copyFixture(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantLines fails the test unless every fragment appears in out.
func wantLines(t *testing.T, out string, fragments ...string) {
	t.Helper()
	for _, f := range fragments {
		if !strings.Contains(out, f) {
			t.Errorf("output lacks %q:\n%s", f, out)
		}
	}
}

// feedServer serves the rss.xml fixture at /feed with an ETag (answering 304
// to a matching If-None-Match), a 500 at /broken and a 404 elsewhere.
func feedServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	rss, err := os.ReadFile(filepath.Join(fixtures, "rss.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var notModified atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/feed":
			if !strings.HasPrefix(r.Header.Get("User-Agent"), "Herald/") {
				http.Error(w, "who are you?", http.StatusForbidden)
				return
			}
			if r.Header.Get("If-None-Match") == `"v1"` {
				notModified.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Type", "application/rss+xml")
			w.Write(rss)
		case "/broken":
			http.Error(w, "oops", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &notModified
}

func TestArticlesImport(t *testing.T) {
	path := testConfig(t, "")
	dir := t.TempDir()
	posts := filepath.Join(dir, "posts")
	if err := os.MkdirAll(filepath.Join(posts, ".drafts"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFixture(t, posts, "article.md")
	copyFixture(t, posts, "article.html")
	copyFixture(t, filepath.Join(posts, ".drafts"), "rss.xml") // hidden: skipped
	os.WriteFile(filepath.Join(posts, "notes.txt"), []byte("not an article"), 0o600)
	feed := copyFixture(t, dir, "rss.xml")

	r := runHerald(t, "", "articles", "import", posts, feed, "--config", path)
	if r.code != exitOK {
		t.Fatalf("first import: code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		filepath.Join(posts, "article.md")+": 1 created, 0 updated, 0 unchanged, 0 rejected\n",
		filepath.Join(posts, "article.html")+": 1 created, 0 updated, 0 unchanged, 0 rejected\n",
		// A feed file's items without a title or link are left out by the
		// parser (a URL import reports them: see TestArticlesImportURL).
		feed+": 2 created, 0 updated, 0 unchanged, 0 rejected\n",
		"3 paths: 4 created, 0 updated, 0 unchanged, 0 rejected; 0 paths failed\n",
	)
	if strings.Contains(r.stdout, ".drafts") || strings.Contains(r.stdout, "notes.txt") {
		t.Errorf("hidden or unknown files were imported:\n%s", r.stdout)
	}

	// Again: nothing changes.
	r = runHerald(t, "", "articles", "import", posts, feed, "--config", path)
	if r.code != exitOK {
		t.Fatalf("second import: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "3 paths: 0 created, 0 updated, 4 unchanged, 0 rejected; 0 paths failed\n")

	// An edited file is updated; a missing path and a file that is not an
	// article fail, after the rest was imported.
	md, _ := os.ReadFile(filepath.Join(posts, "article.md"))
	os.WriteFile(filepath.Join(posts, "article.md"), append(md, []byte("\n\nA correction.\n")...), 0o600)
	broken := filepath.Join(dir, "broken.xml")
	os.WriteFile(broken, []byte("<rss><channel><item>"), 0o600)
	missing := filepath.Join(dir, "missing.md")
	r = runHerald(t, "", "articles", "import", missing, broken, filepath.Join(posts, "article.md"), "--config", path)
	if r.code != exitFailure {
		t.Fatalf("import with failures: code %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		missing+": FAILED: ",
		broken+": FAILED: ",
		filepath.Join(posts, "article.md")+": 0 created, 1 updated, 0 unchanged, 0 rejected\n",
		"3 paths: 0 created, 1 updated, 0 unchanged, 0 rejected; 2 paths failed\n",
	)
}

func TestArticlesImportURL(t *testing.T) {
	srv, _ := feedServer(t)
	path := testConfig(t, "")
	r := runHerald(t, "", "articles", "import", srv.URL+"/feed", srv.URL+"/broken", "--config", path)
	if r.code != exitFailure {
		t.Fatalf("code %d, want 1 for the broken URL\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		srv.URL+"/feed: 2 created, 0 updated, 0 unchanged, 1 rejected\n",
		"  rejected: ",
		srv.URL+"/broken: FAILED: HTTP 500",
		"2 paths: 2 created, 0 updated, 0 unchanged, 1 rejected; 1 path failed\n",
	)
}

func TestArticlesImportUsage(t *testing.T) {
	r := runHerald(t, "", "articles", "import")
	if r.code != exitUsage || !strings.Contains(r.stderr, "PATH") {
		t.Errorf("no path: code %d, stderr %q; want 2 asking for a PATH", r.code, r.stderr)
	}
	r = runHerald(t, "", "articles")
	if r.code != exitUsage || !strings.Contains(r.stderr, "articles import") {
		t.Errorf("herald articles: code %d, stderr %q", r.code, r.stderr)
	}
}

func TestFeedsPoll(t *testing.T) {
	srv, notModified := feedServer(t)
	path := testConfig(t, "feeds:\n  - url: "+srv.URL+"/feed\n    newsletters: [daily]\n")
	r := runHerald(t, "", "feeds", "poll", "--config", path)
	if r.code != exitOK {
		t.Fatalf("first poll: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		"ok      "+srv.URL+"/feed: 2 new, 0 updated, 0 unchanged\n",
		"  skipped: ",
		"1 feed polled: 1 ok, 0 failing; 2 new, 0 updated articles\n",
	)
	r = runHerald(t, "", "feeds", "poll", "--config", path)
	if r.code != exitOK {
		t.Fatalf("second poll: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "ok      "+srv.URL+"/feed: not modified (304)\n")
	if notModified.Load() != 1 {
		t.Errorf("the server answered 304 %d times, want 1 (conditional GET)", notModified.Load())
	}
}

func TestFeedsPollFailing(t *testing.T) {
	srv, _ := feedServer(t)
	path := testConfig(t, "feeds:\n  - url: "+srv.URL+"/feed\n    newsletters: [daily]\n  - url: "+srv.URL+"/gone\n    newsletters: [daily]\n")
	r := runHerald(t, "", "feeds", "poll", "--config", path)
	if r.code != exitFailure {
		t.Fatalf("code %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		"ok      "+srv.URL+"/feed: 2 new",
		"FAILING "+srv.URL+"/gone: HTTP 404 Not Found\n",
		"2 feeds polled: 1 ok, 1 failing; 2 new, 0 updated articles\n",
	)
	r = runHerald(t, "", "feeds", "poll", "--config", path)
	wantLines(t, r.stdout, "FAILING "+srv.URL+"/gone: HTTP 404 Not Found (2 polls in a row)\n")
}

func TestFeedsPollNoFeeds(t *testing.T) {
	r := runHerald(t, "", "feeds", "poll", "--config", testConfig(t, ""))
	if r.code != exitOK || !strings.Contains(r.stdout, "no feeds") {
		t.Errorf("code %d, stdout %q; want 0 and a note that there are no feeds", r.code, r.stdout)
	}
}
