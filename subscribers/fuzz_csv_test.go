package subscribers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald"
	"herald/store/sqlite"
	"herald/subscribers"
)

// FuzzImportCSV feeds arbitrary bytes to the CSV import, through a dry run
// over a real SQLite file: it never panics, fails only with a reason the
// operator can act on, accounts for every row it read, and writes
// nothing.
func FuzzImportCSV(f *testing.F) {
	f.Add("email,name,newsletters\njane@example.org,Jane,daily\n")
	f.Add("email\n\"a@b.example\r\nx\",\n=HYPERLINK(\"http://evil.example\")\n")
	f.Add("name,email\n,Bj\u00f6rk@b\u00fccher.example\n,\"a\"\"b\"@x.example\n")
	f.Add("email,newsletters,status\nx@y.example,\"daily,weekly,nope\",active\n")
	f.Add("\xef\xbb\xbfE-Mail;Name\nx@y.example;X\n")
	f.Add("email\n" + strings.Repeat("a", 70<<10) + "@x.example\n")
	f.Add("")
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "herald.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		f.Fatal(err)
	}
	svc, err := subscribers.NewService(ctx, db, subscribers.Options{
		Newsletters:     []string{"daily", "weekly"},
		MessageIDDomain: "passblue.example",
		ConsentVersion:  "2026-11",
		Now:             func() time.Time { return time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		f.Fatal(err)
	}
	dry := svc.DryRun()
	f.Fuzz(func(t *testing.T, data string) {
		// The fuzzer has no time limit of its own: an import that hangs
		// must crash the worker, which saves the input.
		hung := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("Import hung on %q", data)) })
		defer hung.Stop()
		rejected := 0
		st, err := dry.Import(ctx, strings.NewReader(data), subscribers.ImportOptions{Source: "fuzz", BatchSize: 3},
			func(r subscribers.Rejection) {
				rejected++
				if r.Line < 1 || r.Reason == "" {
					t.Fatalf("rejection %+v has no line or reason", r)
				}
			}, nil)
		if err != nil {
			if !herald.IsCode(err, herald.EINVALID) && !herald.IsCode(err, herald.ETOOLARGE) {
				t.Fatalf("Import: %v, want EINVALID or ETOOLARGE", err)
			}
			return
		}
		if st.Created+st.Updated+st.Unchanged+st.Rejected != st.Rows || st.Rejected != rejected {
			t.Fatalf("stats %+v do not add up (%d rejections reported)", st, rejected)
		}
		subs, err := svc.FindSubscribers(ctx, subscribers.Filter{Limit: 1})
		if err != nil || len(subs) != 0 {
			t.Fatalf("the dry run wrote subscribers: %v %+v", err, subs)
		}
	})
}
