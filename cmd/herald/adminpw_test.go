package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"herald/adminauth"
	"herald/store/sqlite"
)

func TestAdminPassword(t *testing.T) {
	cfg := testConfig(t, "")
	for _, tt := range []struct {
		name, in string
		code     int
		stderr   string
	}{
		{"nothing on stdin", "", exitFailure, "no password on standard input"},
		{"too short", "short\n", exitUsage, "must be at least 12 characters"},
		{"spaces around", " padded password \n", exitUsage, "must not start or end with a space"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runHerald(t, tt.in, "admin", "password", "--config", cfg)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tt.code, tt.stderr)
			}
		})
	}
	if r := runHerald(t, "", "admin", "password", "extra", "--config", cfg); r.code != exitUsage {
		t.Errorf("an argument: exit %d, want %d", r.code, exitUsage)
	}
	const pw = "a long admin password"
	r := runHerald(t, pw+"\r\n", "admin", "password", "--config", cfg)
	if r.code != exitOK || strings.Contains(r.stdout+r.stderr, pw) {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(filepath.Dir(cfg), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc, err := adminauth.NewService(ctx, db, adminauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CheckPassword(ctx, pw); err != nil {
		t.Errorf("the password set does not sign in: %v", err)
	}
	if err := svc.CheckPassword(ctx, pw+"\r"); err == nil {
		t.Error("the line ending became part of the password")
	}
}
