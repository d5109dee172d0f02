package mailer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jhillyerd/enmime/v2"
)

func TestOutboxTransport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "outbox")
	tr, err := NewOutboxTransport(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("outbox dir: %v %v", fi, err)
	}
	ctx := context.Background()

	e := testEmail()
	e.ReturnPath = "bounces+42@passblue.example"
	if err := tr.Send(ctx, e); err != nil {
		t.Fatal(err)
	}
	// A retry of the same message replaces the file.
	if err := tr.Send(ctx, e); err != nil {
		t.Fatal(err)
	}
	later := testEmail()
	later.MessageID = "digest.7.43@passblue.example"
	later.Date = e.Date.Add(time.Minute)
	if err := tr.Send(ctx, later); err != nil {
		t.Fatal(err)
	}

	names := emlFiles(t, dir)
	if got, want := strings.Join(names, " "), FileName(e)+" "+FileName(later); got != want {
		t.Fatalf("files = %s, want %s", got, want)
	}
	if !strings.HasPrefix(names[0], "20260304T100607Z-digest.7.42@passblue.example") {
		t.Errorf("file name %q does not start with the UTC date and Message-ID", names[0])
	}

	raw, err := os.ReadFile(filepath.Join(dir, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("Return-Path: <bounces+42@passblue.example>\r\nFrom: ")) {
		t.Errorf("file does not start with Return-Path then From: %q", raw[:80])
	}
	env, err := enmime.ReadEnvelope(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := env.GetHeader("Message-ID"); got != "<"+e.MessageID+">" {
		t.Errorf("Message-ID = %q", got)
	}
	if env.Root.FirstChild.ContentType != "text/plain" || env.Root.FirstChild.NextSibling.ContentType != "text/html" {
		t.Error("parts out of order")
	}
	if fi, _ := os.Stat(filepath.Join(dir, names[0])); fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode = %v", fi.Mode().Perm())
	}
}

func TestOutboxConcurrentSameMessage(t *testing.T) {
	dir := t.TempDir()
	tr, err := NewOutboxTransport(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			e := testEmail()
			if i%2 == 1 {
				e.MessageID = "other@passblue.example"
			}
			if err := tr.Send(context.Background(), e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if names := emlFiles(t, dir); len(names) != 2 {
		t.Errorf("files = %v, want 2", names)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestOutboxRefusesInvalid(t *testing.T) {
	dir := t.TempDir()
	tr, err := NewOutboxTransport(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := testEmail()
	e.Subject = "x\r\nBcc: victim@example.org"
	err = tr.Send(context.Background(), e)
	var se *SendError
	if !errors.As(err, &se) || !se.Permanent || se.Stage != StageEncode || !errors.Is(err, ErrInvalidEmail) {
		t.Fatalf("err = %#v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
}

func TestFileName(t *testing.T) {
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct{ id, want string }{
		{"a.1@x.example", "20260102T030405Z-a.1@x.example.eml"},
		{"a/b@x", "20260102T030405Z-a_b@x-"},
		{"a_b@x", "20260102T030405Z-a_b@x.eml"},
		{"../../etc/passwd@x", "20260102T030405Z-.._.._etc_passwd@x-"},
	} {
		got := FileName(&Email{MessageID: tc.id, Date: date})
		if !strings.HasPrefix(got, tc.want) || strings.ContainsAny(got, `/\`) {
			t.Errorf("FileName(%q) = %q, want prefix %q", tc.id, got, tc.want)
		}
	}
	a := FileName(&Email{MessageID: "a/b@x", Date: date})
	b := FileName(&Email{MessageID: "a_b@x", Date: date})
	c := FileName(&Email{MessageID: "a:b@x", Date: date})
	if a == b || a == c {
		t.Errorf("sanitised names collide: %s %s %s", a, b, c)
	}
	long := FileName(&Email{MessageID: strings.Repeat("x", 500) + "@x", Date: date})
	if len(long) > 160 {
		t.Errorf("name too long: %d", len(long))
	}
}

func emlFiles(t *testing.T, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range matches {
		names = append(names, filepath.Base(m))
	}
	sort.Strings(names)
	return names
}
