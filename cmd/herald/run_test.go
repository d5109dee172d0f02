package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// result is what one invocation of the program produced.
type result struct {
	code           int
	stdout, stderr string
}

// runHerald runs the program with args, reading stdin from in.
func runHerald(t *testing.T, in string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(in), stdout: &stdout, stderr: &stderr, lookupEnv: os.LookupEnv}
	code := a.run(context.Background(), args)
	return result{code, stdout.String(), stderr.String()}
}

// testConfig writes a valid configuration whose database and outbox live in
// a fresh directory, and returns its path.
func testConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	text := minimalYAML + extra + `
database:
  dsn: ` + filepath.Join(dir, "herald.db") + `
log:
  level: warn
`
	text = strings.Replace(text, "mail:\n", "mail:\n  outbox_dir: "+filepath.Join(dir, "outbox")+"\n", 1)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := runHerald(t, "", args...)
		if r.code != exitOK || r.stderr != "" {
			t.Errorf("herald %s: code %d, stderr %q; want 0 and nothing", args[0], r.code, r.stderr)
		}
		for _, c := range commands() {
			if !strings.Contains(r.stdout, "  "+c.name+" ") {
				t.Errorf("herald %s does not list %q:\n%s", args[0], c.name, r.stdout)
			}
		}
	}
}

func TestCommandHelp(t *testing.T) {
	for _, c := range commands() {
		for _, flag := range []string{"--help", "-h"} {
			args := append(strings.Fields(c.name), flag)
			r := runHerald(t, "", args...)
			if r.code != exitOK || r.stderr != "" {
				t.Errorf("herald %s %s: code %d, stderr %q; want 0", c.name, flag, r.code, r.stderr)
			}
			for _, want := range []string{"Usage: herald " + c.name, "Flags:", "--config FILE", "Example:\n  herald " + strings.Fields(c.name)[0]} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("herald %s %s: usage lacks %q:\n%s", c.name, flag, want, r.stdout)
				}
			}
		}
		// "herald help CMD" is the same page.
		r := runHerald(t, "", append([]string{"help"}, strings.Fields(c.name)...)...)
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage: herald "+c.name) {
			t.Errorf("herald help %s: code %d, stdout %q", c.name, r.code, r.stdout)
		}
	}
}

func TestBadUsage(t *testing.T) {
	tests := []struct {
		args []string
		msg  string
	}{
		{nil, "a command is required"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"--bogus"}, "must follow a command"},
		{[]string{"serve", "--bogus"}, "herald serve: flag provided but not defined: --bogus"},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"migrate", "--config"}, "flag needs an argument: --config"},
		{[]string{"subscribers"}, "a subcommand is required"},
		{[]string{"subscribers", "delete"}, `unknown subcommand "delete"`},
		{[]string{"subscribers", "import"}, "a CSV file"},
		{[]string{"subscribers", "import", "a.csv", "b.csv"}, "one CSV file at a time"},
		{[]string{"subscribers", "import", "a.csv", "--status", "bounced"}, "--status must be pending or active"},
		{[]string{"subscribers", "export", "x"}, `unexpected argument "x"`},
		{[]string{"version", "x"}, `unexpected argument "x"`},
	}
	for _, tt := range tests {
		r := runHerald(t, "", tt.args...)
		if r.code != exitUsage {
			t.Errorf("herald %q: code %d, want 2", tt.args, r.code)
		}
		if !strings.Contains(r.stderr, tt.msg) || !strings.Contains(r.stderr, "Run 'herald") {
			t.Errorf("herald %q: stderr %q, want %q and a usage hint", tt.args, r.stderr, tt.msg)
		}
		if r.stdout != "" {
			t.Errorf("herald %q: stdout %q, want nothing", tt.args, r.stdout)
		}
	}
}

func TestSubscribersGroupHelp(t *testing.T) {
	r := runHerald(t, "", "subscribers", "--help")
	if r.code != exitOK || !strings.Contains(r.stdout, "subscribers import") || !strings.Contains(r.stdout, "subscribers export") {
		t.Errorf("herald subscribers --help: code %d, stdout %q", r.code, r.stdout)
	}
}

func TestVersion(t *testing.T) {
	r := runHerald(t, "", "version")
	re := regexp.MustCompile(`^herald dev \(commit \S+, go1\.\S+\)\n$`)
	if r.code != exitOK || !re.MatchString(r.stdout) {
		t.Errorf("herald version: code %d, stdout %q; want it to match %s", r.code, r.stdout, re)
	}
}

func TestConfigErrorsExitTwo(t *testing.T) {
	t.Run("unknown key", func(t *testing.T) {
		path := testConfig(t, "smtp:\n  hots: x\n")
		r := runHerald(t, "", "migrate", "--config", path)
		if r.code != exitUsage || !strings.Contains(r.stderr, "herald migrate: smtp.hots: unknown key") || !strings.Contains(r.stderr, "line ") {
			t.Errorf("code %d, stderr %q; want 2 and the key with its line", r.code, r.stderr)
		}
	})
	t.Run("bad env", func(t *testing.T) {
		t.Setenv("HERALD_SMTP_PORT", "abc")
		r := runHerald(t, "", "serve", "--config", testConfig(t, ""))
		want := `herald serve: smtp.port: must be 1-65535, got "abc" (HERALD_SMTP_PORT)`
		if r.code != exitUsage || !strings.Contains(r.stderr, want) {
			t.Errorf("code %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
		}
	})
	t.Run("missing explicit file", func(t *testing.T) {
		r := runHerald(t, "", "migrate", "--config", filepath.Join(t.TempDir(), "absent.yaml"))
		if r.code != exitUsage || !strings.Contains(r.stderr, "absent.yaml") {
			t.Errorf("code %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("HERALD_CONFIG", func(t *testing.T) {
		t.Setenv("HERALD_CONFIG", filepath.Join(t.TempDir(), "from-env.yaml"))
		r := runHerald(t, "", "migrate")
		if r.code != exitUsage || !strings.Contains(r.stderr, "from-env.yaml") {
			t.Errorf("code %d, stderr %q; want the file HERALD_CONFIG names", r.code, r.stderr)
		}
	})
}

func TestMigrate(t *testing.T) {
	path := testConfig(t, "")
	r := runHerald(t, "", "migrate", "--config", path)
	if r.code != exitOK || !regexp.MustCompile(`^applied \d+ migrations?\n$`).MatchString(r.stdout) {
		t.Fatalf("first migrate: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runHerald(t, "", "migrate", "--config", path)
	if r.code != exitOK || !strings.Contains(r.stdout, "up to date") {
		t.Errorf("second migrate: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestPostgresUnreachable: a PostgreSQL that does not answer is a runtime
// failure that says so, without the DSN's password.
func TestPostgresUnreachable(t *testing.T) {
	path := testConfig(t, "")
	t.Setenv("HERALD_DATABASE_DRIVER", "postgres")
	t.Setenv("HERALD_DATABASE_DSN", "postgres://herald:s3cret@127.0.0.1:1/herald?sslmode=disable&connect_timeout=2")
	for _, cmd := range []string{"serve", "migrate"} {
		r := runHerald(t, "", cmd, "--config", path)
		if r.code != exitFailure || !strings.Contains(r.stderr, "unavailable") || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("herald %s with an unreachable postgres: code %d, stderr %q; want 1, a clear message and no password", cmd, r.code, r.stderr)
		}
	}
}

// TestMigratePostgres: herald migrate on a fresh PostgreSQL schema, with the
// pool settings from the environment.
func TestMigratePostgres(t *testing.T) {
	path := testConfig(t, "")
	usePostgres(t)
	t.Setenv("HERALD_DATABASE_MAX_CONNS", "3")
	t.Setenv("HERALD_DATABASE_MIN_CONNS", "1")
	t.Setenv("HERALD_DATABASE_MAX_CONN_LIFETIME", "10m")
	r := runHerald(t, "", "migrate", "--config", path)
	if r.code != exitOK || !regexp.MustCompile(`^applied \d+ migrations?\n$`).MatchString(r.stdout) {
		t.Fatalf("first migrate: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runHerald(t, "", "migrate", "--config", path)
	if r.code != exitOK || !strings.Contains(r.stdout, "up to date") {
		t.Errorf("second migrate: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestSubscribersImportExport(t *testing.T) {
	path := testConfig(t, "  - id: weekly\n    name: The Week\n    schedule: \"0 9 * * 6\"\n")
	csv := "email,name,newsletters\n" +
		"ada@example.org,Ada,daily\n" +
		"not-an-address,Bob,daily\n" +
		"grace@example.org,Grace,daily weekly\n" +
		"carol@example.org,Carol,nope\n"
	r := runHerald(t, csv, "subscribers", "import", "-", "--config", path, "--status", "active")
	if r.code != exitOK {
		t.Fatalf("import: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"line 3: n***: ", "line 5: c***@e***.org: ", "4 rows: 2 created, 0 updated, 0 unchanged, 2 rejected"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("import report lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, secret := range []string{"not-an-address", "carol@example.org", "ada@"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("import output shows %q:\n%s%s", secret, r.stdout, r.stderr)
		}
	}

	out := filepath.Join(t.TempDir(), "export.csv")
	r = runHerald(t, "", "subscribers", "export", "--out", out, "--config", path)
	if r.code != exitOK || !strings.Contains(r.stdout, "exported 2 subscribers") {
		t.Fatalf("export: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || lines[0] != "email,name,newsletters,status,created_at,confirmed_at" ||
		!strings.HasPrefix(lines[1], "ada@example.org,Ada,daily,active,") ||
		!strings.HasPrefix(lines[2], "grace@example.org,Grace,daily weekly,active,") {
		t.Errorf("export file:\n%s", data)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}

	r = runHerald(t, "", "subscribers", "export", "--config", path)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "email,name,newsletters,status") || strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("export to stdout: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestSubscribersImportMissingFile(t *testing.T) {
	r := runHerald(t, "", "subscribers", "import", filepath.Join(t.TempDir(), "absent.csv"), "--config", testConfig(t, ""))
	if r.code != exitFailure || !strings.Contains(r.stderr, "absent.csv") {
		t.Errorf("code %d, stderr %q; want 1 and the file name", r.code, r.stderr)
	}
}

func TestMaskEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"jane.doe@example.org", "j***@e***.org"},
		{"ÉLodie@exämple.fr", "É***@e***.fr"},
		{"x@localhost", "x***@l***"},
		{"not-an-address", "n***"},
		{"@example.org", "***@e***.org"},
		{"  ", "(empty)"},
		{"a@b.c\x1b[31m", "a***@b***"},
	}
	for _, tt := range tests {
		if got := maskEmail(tt.in); got != tt.want {
			t.Errorf("maskEmail(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriteFileAtomicKeepsOldFileOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.csv")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := writeFileAtomic(path, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return os.ErrDeadlineExceeded
	})
	if err == nil {
		t.Fatal("writeFileAtomic succeeded, want the fill error")
	}
	if data, _ := os.ReadFile(path); string(data) != "old" {
		t.Errorf("file = %q, want the old content", data)
	}
}
