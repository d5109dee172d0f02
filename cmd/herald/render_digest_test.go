package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"herald/delivery"
	"herald/subscribers"
)

// A digest is rendered from what the claim read with each message and the
// batch's suppression check, not from queries of its own: a reader who left
// the newsletter, paused, unsubscribed or was suppressed after the issue
// was queued is still cancelled, and the others get their digest.
func TestRendererDigestChangesAfterEnqueue(t *testing.T) {
	ctx := context.Background()
	path := testConfig(t, "  - id: weekly\n    name: The Weekly\n    schedule: \"0 7 * * 1\"\n")
	posts := t.TempDir()
	writeArticle(t, posts, "first", "First Story", time.Now().Add(-time.Hour))
	if r := runHerald(t, "", "articles", "import", posts, "--config", path); r.code != exitOK {
		t.Fatalf("articles import: %d %s%s", r.code, r.stdout, r.stderr)
	}
	readers := []string{"kept", "left", "paused", "unsubscribed", "suppressed"}
	csv := "email,name,newsletters\n"
	for _, r := range readers {
		csv += r + "@example.org," + r + ",daily weekly\n"
	}
	if r := runHerald(t, csv, "subscribers", "import", "-", "--status", "active", "--config", path); r.code != exitOK {
		t.Fatalf("subscribers import: %d %s%s", r.code, r.stdout, r.stderr)
	}

	cfg, err := loadConfig(configSource{Path: path, Explicit: true, LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	subs, err := newSubscribers(ctx, cfg, db, logger)
	if err != nil {
		t.Fatal(err)
	}
	digests, err := newDigests(cfg, db, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	composer, err := newComposer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := digests.SendNow(ctx, "daily")
	if err != nil || iss.Readers != len(readers) {
		t.Fatalf("SendNow = %+v, %v; want %d readers", iss, err, len(readers))
	}

	// After the issue was queued:
	id := map[string]int64{}
	for _, r := range readers {
		found, err := subs.FindSubscribers(ctx, subscribers.Filter{Query: r + "@example.org", Limit: 1})
		if err != nil || len(found) != 1 {
			t.Fatalf("find %s: %v %v", r, found, err)
		}
		id[r] = found[0].ID
	}
	update := func(who string, p subscribers.PreferencesUpdate) {
		t.Helper()
		if _, err := subs.UpdatePreferences(ctx, subs.PreferencesToken(id[who]), p); err != nil {
			t.Fatal(err)
		}
	}
	update("left", subscribers.PreferencesUpdate{Newsletters: []string{"weekly"}, Name: "left"})
	update("paused", subscribers.PreferencesUpdate{Newsletters: []string{"daily", "weekly"}, Name: "paused",
		PauseUntil: time.Now().Add(72 * time.Hour)})
	if _, err := subs.Unsubscribe(ctx, subs.UnsubscribeToken(id["unsubscribed"]), "page"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := subs.Suppress(ctx, "Suppressed@example.org", "test"); err != nil {
		t.Fatal(err)
	}

	jobs, err := db.ClaimMessages(ctx, "test", time.Now(), time.Minute, 100)
	if err != nil || len(jobs) != len(readers) {
		t.Fatalf("claimed %d, %v; want %d", len(jobs), err, len(readers))
	}
	r := newRenderer(cfg, subs, db, composer, digests)
	unprepared := make([]delivery.Job, len(jobs))
	copy(unprepared, jobs)
	if err := r.PrepareBatch(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	// Both ways: with the batch's check, and without it (a failed
	// PrepareBatch), where Render looks for itself.
	for name, batch := range map[string][]delivery.Job{"prepared": jobs, "unprepared": unprepared} {
		for _, j := range batch {
			who := strings.TrimSuffix(j.Email, "@example.org")
			e, err := r.Render(ctx, j)
			if who == "kept" {
				if err != nil {
					t.Errorf("%s: Render(kept) = %v", name, err)
					continue
				}
				var b strings.Builder
				if _, err := e.WriteTo(&b); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(b.String(), "First Story") || !strings.Contains(b.String(), "To: kept <kept@example.org>") {
					t.Errorf("%s: the kept reader's digest lacks the story or their address:\n%.600s", name, b.String())
				}
				continue
			}
			if !errors.Is(err, delivery.ErrCancel) {
				t.Errorf("%s: Render(%s) = %v, want cancelled", name, who, err)
			}
		}
	}
}
