package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"herald/delivery"
	"herald/subscribers"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitForFile waits until a file in dir contains want and returns its text.
func waitForFile(t *testing.T, dir, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		for _, f := range files {
			if data, err := os.ReadFile(f); err == nil && strings.Contains(string(data), want) {
				return string(data)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no email in %s contains %q", dir, want)
	return ""
}

// TestServe runs the whole server: a signup gets a confirmation email in
// the outbox, confirming it gets the welcome, and a stop exits 0.
func TestServe(t *testing.T) {
	addr := freeAddr(t)
	base := "http://" + addr
	path := testConfig(t, "http:\n  addr: "+addr+"\n  base_url: "+base+"\n  shutdown_timeout: 2s\n")
	outbox := filepath.Join(filepath.Dir(path), "outbox")
	t.Setenv("HERALD_LOG_LEVEL", "info")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, lookupEnv: os.LookupEnv}
	done := make(chan int, 1)
	go func() { done <- a.run(ctx, []string{"serve", "--config", path}) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before answering: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	resp, err := http.Post(base+"/subscribe", "application/json", strings.NewReader(`{"email":"reader@example.org","name":"Reader","newsletters":["daily"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /subscribe: %d", resp.StatusCode)
	}
	msg := waitForFile(t, outbox, base+"/confirm/")
	for _, want := range []string{"List-Unsubscribe: <" + base + "/unsubscribe/", "List-Unsubscribe-Post: List-Unsubscribe=One-Click", "777 UN Plaza"} {
		if !strings.Contains(msg, want) {
			t.Errorf("confirmation lacks %q", want)
		}
	}
	token := regexp.MustCompile(regexp.QuoteMeta(base) + `/confirm/([A-Za-z0-9_-]+)`).FindStringSubmatch(msg)[1]
	resp, err = http.PostForm(base+"/confirm/"+token, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /confirm: %d", resp.StatusCode)
	}
	waitForFile(t, outbox, "Subject: Welcome to")

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	for _, want := range []string{"herald started", "addr=" + addr, "herald stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestServePortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := testConfig(t, "http:\n  addr: "+ln.Addr().String()+"\n")
	r := runHerald(t, "", "serve", "--config", path)
	if r.code != exitFailure || !strings.Contains(r.stderr, "http.addr") {
		t.Errorf("code %d, stderr %q; want 1 naming http.addr", r.code, r.stderr)
	}
}

// TestRendererCancels checks that mail nobody should get any more is
// cancelled rather than sent.
func TestRendererCancels(t *testing.T) {
	ctx := context.Background()
	cfg, err := loadConfig(configSource{Path: testConfig(t, ""), Explicit: true, LookupEnv: noEnv})
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
	composer, err := newComposer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newRenderer(cfg, subs, db, composer, nil)
	importOne := func(email string, st subscribers.Status) int64 {
		t.Helper()
		if _, err := subs.Import(ctx, strings.NewReader("email\n"+email+"\n"), subscribers.ImportOptions{Status: st}, nil, nil); err != nil {
			t.Fatal(err)
		}
		found, err := subs.FindSubscribers(ctx, subscribers.Filter{Query: email, Limit: 1})
		if err != nil || len(found) != 1 {
			t.Fatalf("find %s: %v %v", email, found, err)
		}
		return found[0].ID
	}
	active := importOne("active@example.org", subscribers.StatusActive)
	pending := importOne("pending@example.org", subscribers.StatusPending)
	left := importOne("left@example.org", subscribers.StatusActive)
	if _, err := subs.Unsubscribe(ctx, subs.UnsubscribeToken(left), "page"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		kind   string
		id     int64
		cancel bool
	}{
		{subscribers.KindConfirmation, active, true},
		{subscribers.KindWelcome, pending, true},
		{subscribers.KindWelcome, 999, true},
		{subscribers.KindConfirmation, pending, false},
		{subscribers.KindWelcome, active, false},
		// An unsubscribed reader who signs up again gets the confirmation,
		// and nothing else.
		{subscribers.KindConfirmation, left, false},
		{subscribers.KindWelcome, left, true},
		{"some-future-kind", left, true},
	}
	for _, tt := range tests {
		job := delivery.Job{Kind: tt.kind, SubscriberID: tt.id, MessageID: "test." + tt.kind + "@passblue.example", CreatedAt: time.Now()}
		e, err := r.Render(ctx, job)
		if got := errors.Is(err, delivery.ErrCancel); got != tt.cancel {
			t.Errorf("Render(%s, subscriber %d) = %v; cancelled %v, want %v", tt.kind, tt.id, err, got, tt.cancel)
		}
		if !tt.cancel && err == nil {
			var text bytes.Buffer
			if _, err := e.WriteTo(&text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), cfg.HTTP.BaseURL+"/unsubscribe/") {
				t.Errorf("%s lacks the unsubscribe link", tt.kind)
			}
			if tt.kind == subscribers.KindConfirmation && !strings.Contains(text.String(), cfg.HTTP.BaseURL+"/confirm/") {
				t.Errorf("confirmation lacks the confirm link")
			}
		}
	}
}

func TestDescribeSchedule(t *testing.T) {
	tests := []struct{ expr, tz, want string }{
		{"0 7 * * 1-5", "America/New_York", "every weekday at 7:00 a.m. New York time"},
		{"0 9 * * 6", "America/New_York", "every Saturday at 9:00 a.m. New York time"},
		{"30 18 * * *", "UTC", "every day at 6:30 p.m. UTC"},
		{"0 0 * * 0", "Europe/Paris", "every Sunday at 12:00 a.m. Paris time"},
		{"0 12 * * sat,sun", "UTC", "every Saturday and Sunday at 12:00 p.m. UTC"},
		{"*/15 * * * *", "UTC", ""},
		{"0 7 1 * *", "UTC", ""},
		{"0 7 * * 1,3,5", "UTC", ""},
	}
	for _, tt := range tests {
		if got := describeSchedule(tt.expr, tt.tz); got != tt.want {
			t.Errorf("describeSchedule(%q, %q) = %q, want %q", tt.expr, tt.tz, got, tt.want)
		}
	}
}

// TestServePollsFeeds: serve polls the configured feeds at start and on its
// interval, and stops polling with the rest on a signal.
func TestServePollsFeeds(t *testing.T) {
	srv, notModified := feedServer(t)
	addr := freeAddr(t)
	path := testConfig(t, "http:\n  addr: "+addr+"\n  base_url: http://"+addr+"\n  shutdown_timeout: 2s\n"+
		"articles:\n  poll_interval: 100ms\n"+
		"feeds:\n  - url: "+srv.URL+"/feed\n    newsletters: [daily]\n")
	t.Setenv("HERALD_LOG_LEVEL", "info")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: stderr, lookupEnv: os.LookupEnv}
	done := make(chan int, 1)
	go func() { done <- a.run(ctx, []string{"serve", "--config", path}) }()

	// The first poll stores the articles; the next ones are conditional.
	deadline := time.Now().Add(10 * time.Second)
	for notModified.Load() < 2 {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the feed was not polled again with its ETag:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited %d, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(stderr.String(), "created=2") {
		t.Errorf("the log does not show the first poll storing 2 articles:\n%s", stderr.String())
	}
}

// TestServeRefusesBrokenTemplate: a template override that does not parse
// stops serve before it listens, naming the file and the line.
func TestServeRefusesBrokenTemplate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "digest.html.tmpl")
	if err := os.WriteFile(bad, []byte("<p>fine</p>\n<p>{{ .Subject </p>\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := testConfig(t, "http:\n  addr: "+freeAddr(t)+"\n")
	t.Setenv("HERALD_MAIL_TEMPLATES_DIR", dir)
	r := runHerald(t, "", "serve", "--config", path)
	if r.code != exitUsage || !strings.Contains(r.stderr, "mail.templates_dir") || !strings.Contains(r.stderr, bad) || !strings.Contains(r.stderr, ":2:") {
		t.Errorf("code %d, stderr %q; want 2 naming mail.templates_dir, %s and line 2", r.code, r.stderr, bad)
	}
}
