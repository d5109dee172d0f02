package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokensCommands: create prints the token alone on the last line and
// stores only its hash; list shows names, never tokens; revoke marks it.
func TestTokensCommands(t *testing.T) {
	cfg := testConfig(t, "")
	r := runHerald(t, "", "tokens", "create", "cms-publisher", "--config", cfg)
	if r.code != exitOK {
		t.Fatalf("create: code %d, stderr %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	token := lines[len(lines)-1]
	if len(lines) < 2 || !strings.HasPrefix(token, "hrld_") || strings.ContainsAny(token, " \t") {
		t.Fatalf("create stdout = %q: want an explanation, then the token alone on the last line", r.stdout)
	}
	if !strings.Contains(lines[0], "write") {
		t.Errorf("the default scope is not write: %q", lines[0])
	}

	r = runHerald(t, "", "tokens", "create", "dashboard", "--scope", "read", "--config", cfg)
	if r.code != exitOK || !strings.Contains(r.stdout, "read token") {
		t.Fatalf("create --scope read: code %d, %s %s", r.code, r.stdout, r.stderr)
	}
	r = runHerald(t, "", "tokens", "create", "dashboard", "--config", cfg)
	if r.code != exitFailure || !strings.Contains(r.stderr, "exists already") {
		t.Errorf("duplicate name: code %d, stderr %q", r.code, r.stderr)
	}
	r = runHerald(t, "", "tokens", "create", "x", "--scope", "admin", "--config", cfg)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--scope") {
		t.Errorf("bad scope: code %d, stderr %q", r.code, r.stderr)
	}
	r = runHerald(t, "", "tokens", "create", "--config", cfg)
	if r.code != exitUsage {
		t.Errorf("no name: code %d", r.code)
	}

	r = runHerald(t, "", "tokens", "revoke", "dashboard", "--config", cfg)
	if r.code != exitOK || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("revoke: code %d, %s %s", r.code, r.stdout, r.stderr)
	}
	r = runHerald(t, "", "tokens", "revoke", "nope", "--config", cfg)
	if r.code != exitFailure || !strings.Contains(r.stderr, `no token named "nope"`) {
		t.Errorf("revoke unknown: code %d, stderr %q", r.code, r.stderr)
	}

	r = runHerald(t, "", "tokens", "list", "--config", cfg)
	if r.code != exitOK {
		t.Fatalf("list: code %d, %s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, token) || strings.Contains(r.stdout, "hrld_") {
		t.Errorf("list shows a token:\n%s", r.stdout)
	}
	for _, want := range []string{"cms-publisher", "write", "never", "dashboard", "read"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list lacks %q:\n%s", want, r.stdout)
		}
	}
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || strings.Contains(lines[1], "dashboard") && !strings.Contains(lines[1], "20") {
		t.Errorf("list:\n%s", r.stdout)
	}

	// The token is nowhere on disk.
	dir := filepath.Dir(cfg)
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(strings.TrimPrefix(token, "hrld_"))) {
			t.Errorf("the token is in %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
