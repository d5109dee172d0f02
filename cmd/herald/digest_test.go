package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/digest"
)

// writeArticle writes a Markdown article published at t into dir.
func writeArticle(t *testing.T, dir, slug, title string, published time.Time) {
	t.Helper()
	md := "---\ntitle: \"" + title + "\"\nurl: https://passblue.example/" + slug + "/\nauthor: Desk\ndate: " +
		published.UTC().Format(time.RFC3339) + "\n---\n\nThe story of " + title + ".\n"
	if err := os.WriteFile(filepath.Join(dir, slug+".md"), []byte(md), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDigestPreviewAndSend runs the digest commands against the outbox
// transport: a preview for a new reader and for a subscriber, a send that
// delivers to every reader, and a second send with nothing new.
func TestDigestPreviewAndSend(t *testing.T) {
	path := testConfig(t, "")
	outbox := filepath.Join(filepath.Dir(path), "outbox")
	posts := t.TempDir()
	now := time.Now()
	writeArticle(t, posts, "first", "First Story", now.Add(-2*time.Hour))
	writeArticle(t, posts, "second", "Second Story", now.Add(-time.Hour))
	if r := runHerald(t, "", "articles", "import", posts, "--config", path); r.code != exitOK {
		t.Fatalf("articles import: %d %s%s", r.code, r.stdout, r.stderr)
	}
	csv := "email,name,newsletters\nana@example.org,Ana,daily\nben@example.org,,daily\n"
	if r := runHerald(t, csv, "subscribers", "import", "-", "--status", "active", "--config", path); r.code != exitOK {
		t.Fatalf("subscribers import: %d %s%s", r.code, r.stdout, r.stderr)
	}

	r := runHerald(t, "", "digest", "preview", "daily", "--config", path)
	if r.code != exitOK {
		t.Fatalf("preview: %d %s", r.code, r.stderr)
	}
	wantLines(t, r.stdout, "<html", "First Story", "Second Story", "/unsubscribe/preview")
	wantLines(t, r.stderr, "The Daily Brief — ", "2 articles")

	out := filepath.Join(t.TempDir(), "ana.txt")
	r = runHerald(t, "", "digest", "preview", "daily", "--to", "ANA@example.org", "--text", "--out", out, "--config", path)
	if r.code != exitOK || r.stdout != "" {
		t.Fatalf("preview --to --text --out: %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, string(text), "Ana", "First Story", "http://127.0.0.1:8080/unsubscribe/")
	if strings.Contains(string(text), "<html") || strings.Contains(string(text), "/unsubscribe/preview") {
		t.Errorf("the text preview for ana is HTML or has sample links:\n%s", text)
	}

	r = runHerald(t, "", "digest", "preview", "daily", "--to", "nobody@example.org", "--config", path)
	if r.code != exitFailure || !strings.Contains(r.stderr, "No active subscriber") {
		t.Errorf("preview for a stranger: %d %q; want 1 saying so", r.code, r.stderr)
	}

	r = runHerald(t, "", "digest", "send", "daily", "--config", path)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "issue 1: sent 2, failed 0, bounced 0, cancelled 0\n") {
		t.Fatalf("send: %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	// The send returned once every message settled: both are in the outbox.
	files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
	digests := map[string]int{}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if !strings.Contains(string(data), "Message-ID: <herald.digest.1.") {
			continue
		}
		for _, to := range []string{"ana@example.org", "ben@example.org"} {
			if strings.Contains(string(data), to) {
				digests[to]++
			}
		}
	}
	if digests["ana@example.org"] != 1 || digests["ben@example.org"] != 1 {
		t.Errorf("digests in the outbox by reader = %v, want one each", digests)
	}

	r = runHerald(t, "", "digest", "send", "daily", "--config", path)
	if r.code != exitFailure || !strings.Contains(r.stderr, "nothing new") {
		t.Errorf("second send: %d %q; want 1 and nothing new", r.code, r.stderr)
	}
	r = runHerald(t, "", "digest", "preview", "daily", "--to", "ana@example.org", "--config", path)
	if r.code != exitFailure || !strings.Contains(r.stderr, "nothing new for ana@example.org") {
		t.Errorf("preview after the send: %d %q; want 1 and nothing new", r.code, r.stderr)
	}
}

func TestDigestUsage(t *testing.T) {
	path := testConfig(t, "")
	for _, args := range [][]string{
		{"digest", "send", "--config", path},
		{"digest", "send", "daily", "weekly", "--config", path},
		{"digest", "preview", "nope", "--config", path},
	} {
		r := runHerald(t, "", args...)
		if r.code != exitUsage {
			t.Errorf("herald %s: code %d, stderr %q; want 2", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	r := runHerald(t, "", "digest", "preview", "nope", "--config", path)
	if !strings.Contains(r.stderr, `no newsletter "nope"`) || !strings.Contains(r.stderr, "daily") {
		t.Errorf("unknown newsletter: stderr %q; want the known ids", r.stderr)
	}
}

// TestEditionCache: an edition is prepared once however many workers ask
// at once, failures are not kept, and the cache stays within its size.
func TestEditionCache(t *testing.T) {
	ctx := context.Background()
	c := newEditionCache(2)
	var calls atomic.Int32
	release := make(chan struct{})
	prepare := func() (*preparedEdition, error) {
		calls.Add(1)
		<-release
		return &preparedEdition{newsletterID: "daily"}, nil
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ed, err := c.get(ctx, 1, prepare)
			if err != nil || ed.newsletterID != "daily" {
				t.Errorf("get = %v, %v", ed, err)
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("prepared %d times, want once", n)
	}

	boom := errors.New("boom")
	if _, err := c.get(ctx, 2, func() (*preparedEdition, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("get = %v, want boom", err)
	}
	ok := func() (*preparedEdition, error) { calls.Add(1); return &preparedEdition{}, nil }
	if _, err := c.get(ctx, 2, ok); err != nil {
		t.Errorf("after a failure: %v, want a new attempt", err)
	}
	c.get(ctx, 1, ok) // 1 is now the most recently used
	c.get(ctx, 3, ok) // evicts 2
	if len(c.entries) != 2 || c.entries[2] != nil || c.entries[1] == nil {
		t.Errorf("cache holds %v, want editions 1 and 3", c.order)
	}

	// A caller whose context ends stops waiting; the preparation goes on.
	slow := make(chan struct{})
	go c.get(ctx, 4, func() (*preparedEdition, error) { <-slow; return &preparedEdition{}, nil })
	time.Sleep(10 * time.Millisecond)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.get(cctx, 4, ok); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter: %v", err)
	}
	close(slow)
}

// digestProgress is a Progress with the unsettled remainder queued.
func digestProgress(total, sent, failed, bounced, cancelled int) digest.Progress {
	return digest.Progress{Total: total, Sent: sent, Failed: failed, Bounced: bounced, Cancelled: cancelled,
		Queued: total - sent - failed - bounced - cancelled}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(7, digestProgress(100, 40, 8, 1, 1), 10*time.Second)
	want := "issue 7: 50/100 settled (sent 40, failed 8, bounced 1, cancelled 1), 5.0/s, ETA 10s"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
}
