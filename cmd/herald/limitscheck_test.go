package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald/store/postgres"
	"herald/store/postgres/pgtest"
	"herald/web"
)

// The limits settings' encoding is the same for the same settings and
// differs, naming the key, when any one differs.
func TestLimitsSettings(t *testing.T) {
	base := LimitsConfig{SignupPerIP: 10, SignupPerSubnet: 50, MinFillTime: 2 * time.Second, Altcha: "attack",
		AttackThreshold: 100, AttackCooldown: 10 * time.Minute, MXTimeout: time.Second}
	same := base
	if limitsSettings(base) != limitsSettings(same) {
		t.Fatal("the same settings encode differently")
	}
	list := writeList(t, t.TempDir(), "my list.txt", "mailinator.com\n")
	tests := []struct {
		name   string
		change func(*LimitsConfig)
		key    string
	}{
		{"per ip", func(l *LimitsConfig) { l.SignupPerIP = 3 }, "limits.signup_per_ip"},
		{"per subnet", func(l *LimitsConfig) { l.SignupPerSubnet = 0 }, "limits.signup_per_subnet"},
		{"fill time", func(l *LimitsConfig) { l.MinFillTime = 0 }, "limits.min_fill_time"},
		{"disposable list", func(l *LimitsConfig) { l.DisposableDomainsFile = list }, "limits.disposable_domains_file"},
		{"mx", func(l *LimitsConfig) { l.CheckMX = true }, "limits.check_mx"},
		{"mx timeout", func(l *LimitsConfig) { l.MXTimeout = 2 * time.Second }, "limits.mx_timeout"},
		{"altcha", func(l *LimitsConfig) { l.Altcha = "always" }, "limits.altcha"},
		{"threshold", func(l *LimitsConfig) { l.AttackThreshold = 99 }, "limits.attack_threshold"},
		{"cooldown", func(l *LimitsConfig) { l.AttackCooldown = time.Minute }, "limits.attack_cooldown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := base
			tt.change(&other)
			mine, theirs := limitsSettings(base), limitsSettings(other)
			myFP, theirFP, keys := limitsDiff(mine, theirs)
			if myFP == theirFP || len(myFP) != 16 {
				t.Errorf("fingerprints %q and %q", myFP, theirFP)
			}
			if len(keys) != 1 || keys[0] != tt.key {
				t.Errorf("differing keys %q, want [%s]", keys, tt.key)
			}
		})
	}
}

// limitsWarning starts the warning an instance logs when another one runs
// with different limits settings.
const limitsWarning = "another instance on this database runs with different limits.* settings"

// startLimitsInstance starts `herald serve` on the PostgreSQL schema the
// test chose (usePostgres) with limits, the YAML under "limits:", waits
// until it is ready and returns its log. It stops with the test.
func startLimitsInstance(t *testing.T, name, limits string) *lockedBuffer {
	t.Helper()
	_, log := startLimitsServe(t, name, limits)
	return log
}

// startLimitsServe is startLimitsInstance, and also returns the instance's
// base URL.
func startLimitsServe(t *testing.T, name, limits string) (base string, log *lockedBuffer) {
	t.Helper()
	addr := freeAddr(t)
	base = "http://" + addr
	path := testConfig(t, "limits:\n"+limits+"http:\n  addr: "+addr+"\n  base_url: "+base+"\n  shutdown_timeout: 5s\n")
	stderr := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, io.Discard, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop within 20 s")
		}
		if t.Failed() {
			t.Logf("instance %s:\n%s", name, stderr.String())
		}
	})
	waitReady(t, base, done, stderr)
	return base, stderr
}

// waitLog reports whether log holds want within five seconds.
func waitLog(log *lockedBuffer, want string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(log.String(), want) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Two `herald serve` on one PostgreSQL schema with the same limits
// settings say nothing; a third with another limits.signup_per_ip warns,
// at start, that the others differ, naming the key and not the values.
func TestServeWarnsOfDifferentLimits(t *testing.T) {
	pgtest.Require(t)
	usePostgres(t)
	start := func(perIP string) *lockedBuffer {
		t.Helper()
		return startLimitsInstance(t, "with signup_per_ip "+perIP, "  signup_per_ip: "+perIP+"\n")
	}
	const warning = limitsWarning

	a := start("7")
	b := start("7")
	c := start("3")
	if !waitLog(c, warning) {
		t.Fatalf("the instance with other limits did not warn:\n%s", c.String())
	}
	if n := strings.Count(c.String(), warning); n != 2 {
		t.Errorf("%d warnings, want one for each of the two other instances:\n%s", n, c.String())
	}
	if !strings.Contains(c.String(), "differing=limits.signup_per_ip") {
		t.Errorf("the warning does not name limits.signup_per_ip:\n%s", c.String())
	}
	if strings.Contains(c.String(), "signup_per_ip=7") {
		t.Errorf("the warning holds the other instance's settings, not just their fingerprint:\n%s", c.String())
	}
	// b started beside a, which has the same settings.
	for name, log := range map[string]*lockedBuffer{"first": a, "second": b} {
		if strings.Contains(log.String(), warning) {
			t.Errorf("the %s instance, with the same limits as the other, warned:\n%s", name, log.String())
		}
	}
}

// fakeRecorder is a database whose other instances a test chooses.
type fakeRecorder struct {
	others    []postgres.LimitsRecord
	recorded  int
	forgotten []string
}

func (f *fakeRecorder) RecordLimits(_ context.Context, instance, settings string, now time.Time, within time.Duration) ([]postgres.LimitsRecord, error) {
	f.recorded++
	return f.others, nil
}

func (f *fakeRecorder) ForgetLimits(_ context.Context, instance string) error {
	f.forgotten = append(f.forgotten, instance)
	return nil
}

// The check warns once for each other instance and settings, however many
// passes see them, and deletes its own record when it stops.
func TestLimitsCheckWarnsOnceAndForgets(t *testing.T) {
	var log bytes.Buffer
	db := &fakeRecorder{}
	cfg := &Config{Limits: LimitsConfig{SignupPerIP: 10}}
	c := newLimitsCheck(cfg, db, slog.New(slog.NewTextHandler(&log, nil)))
	other := limitsSettings(LimitsConfig{SignupPerIP: 3})
	db.others = []postgres.LimitsRecord{{Instance: "web-2:1:ab", Settings: other, RecordedAt: time.Now()}}
	c.pass(t.Context())
	c.pass(t.Context())
	db.others = append(db.others, postgres.LimitsRecord{Instance: "web-3:1:cd", Settings: other, RecordedAt: time.Now()})
	c.pass(t.Context())
	if n := strings.Count(log.String(), "different limits.* settings"); n != 2 {
		t.Errorf("%d warnings over three passes, want one per other instance:\n%s", n, log.String())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(db.forgotten) != 1 || db.forgotten[0] != c.instance {
		t.Errorf("forgotten %q, want this instance's record %q", db.forgotten, c.instance)
	}
}

// writeList writes a disposable domains list into dir and returns its path.
func writeList(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// limits.disposable_domains_file is compared by the list it gives, as
// Herald uses it, not by its path: lists that differ only in comments,
// case, order, blank lines and repeats are the same setting, whatever
// their paths; other domains at one path, or the built-in list beside a
// file, are not. A file that does not load is recorded as such.
func TestLimitsSettingsDisposableList(t *testing.T) {
	dir := t.TempDir()
	list := writeList(t, dir, "list.txt", "mailinator.com\nyopmail.com\nguerrillamail.com\n")
	reformatted := writeList(t, dir, "other name.txt",
		"# our list\n\n  YopMail.com  # the French one\nguerrillamail.com\n\nMailinator.COM\nyopmail.com\n")
	changed := writeList(t, dir, "changed.txt", "mailinator.com\nyopmail.com\nsharklasers.com\n")
	settings := func(path string) string {
		return limitsSettings(LimitsConfig{SignupPerIP: 10, DisposableDomainsFile: path})
	}

	if a, b := settings(list), settings(reformatted); a != b {
		t.Errorf("two paths to the same list encode differently:\n%s\n%s", a, b)
	}
	want := "file, 3 domains, sha256 "
	if got := limitsValue(settings(list), disposableKey); !strings.HasPrefix(got, want) || len(got) != len(want)+64 {
		t.Errorf("the list is recorded as %q, want %q and a SHA-256", got, want)
	}
	if strings.Contains(settings(list), "list.txt") {
		t.Errorf("the encoding holds the path: %s", settings(list))
	}

	builtin, err := web.DisposableDomains("")
	if err != nil {
		t.Fatal(err)
	}
	builtinCopy := writeList(t, dir, "builtin.txt", strings.Join(builtin, "\n"))
	unreadable := filepath.Join(dir, "missing.txt")
	invalid := writeList(t, dir, "invalid.txt", "mailinator.com\nnot a domain\n")
	for _, tt := range []struct {
		name, a, b string
	}{
		{"other domains", list, changed},
		{"built-in list and a file", "", list},
		{"built-in list and a file with its domains", "", builtinCopy},
		{"a list and an unreadable file", list, unreadable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, keys := limitsDiff(settings(tt.a), settings(tt.b))
			if len(keys) != 1 || keys[0] != "limits.disposable_domains_file" {
				t.Errorf("differing keys %q, want [limits.disposable_domains_file]", keys)
			}
		})
	}
	if got := limitsValue(settings(""), disposableKey); !strings.HasPrefix(got, fmt.Sprintf("builtin, %d domains, sha256 ", len(builtin))) {
		t.Errorf("the built-in list is recorded as %q", got)
	}
	for _, path := range []string{unreadable, invalid} {
		if got := limitsValue(settings(path), disposableKey); got != "file does not load" {
			t.Errorf("%s is recorded as %q, want %q", filepath.Base(path), got, "file does not load")
		}
	}
}

// Instances on one PostgreSQL schema compare their disposable domains
// lists by the domains in them: one that finds other domains at the same
// path warns, naming both lists; one with the same domains at another
// path, written otherwise, does not; one with the built-in list beside
// one with a file warns.
func TestServeWarnsOfDifferentDisposableLists(t *testing.T) {
	pgtest.Require(t)
	withList := func(path string) string {
		return "  disposable_domains_file: '" + path + "'\n"
	}

	t.Run("same path, other domains", func(t *testing.T) {
		usePostgres(t)
		path := writeList(t, t.TempDir(), "disposable.txt", "mailinator.com\nyopmail.com\n")
		a := startLimitsInstance(t, "with the first list", withList(path))
		// The second host's copy of the list has one more domain.
		writeList(t, filepath.Dir(path), "disposable.txt", "mailinator.com\nyopmail.com\nsharklasers.com\n")
		b := startLimitsInstance(t, "with the updated list", withList(path))
		if !waitLog(b, limitsWarning) {
			t.Fatalf("the instance whose list at the same path holds other domains did not warn:\n%s", b.String())
		}
		for _, want := range []string{"differing=limits.disposable_domains_file ",
			`disposable_list="file, 3 domains, sha256 `, `other_disposable_list="file, 2 domains, sha256 `} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("the warning does not hold %s:\n%s", want, b.String())
			}
		}
		if strings.Contains(a.String(), limitsWarning) {
			t.Errorf("the first instance, alone when it started, warned:\n%s", a.String())
		}
	})

	t.Run("other paths, same domains", func(t *testing.T) {
		usePostgres(t)
		dir := t.TempDir()
		a := startLimitsInstance(t, "with the plain list",
			withList(writeList(t, dir, "plain.txt", "mailinator.com\nyopmail.com\nguerrillamail.com\n")))
		b := startLimitsInstance(t, "with the list written otherwise",
			withList(writeList(t, dir, "commented.txt",
				"# throwaway mail\n\nYOPMAIL.com # French\n  guerrillamail.com\nMailinator.com\nyopmail.com\n\n")))
		// A third instance, with the same domains again but another
		// signup_per_ip, warns of the other two: by then they have
		// recorded their lists, and it names only signup_per_ip.
		c := startLimitsInstance(t, "with another signup_per_ip",
			"  signup_per_ip: 3\n"+withList(writeList(t, dir, "sorted.txt", "guerrillamail.com\nmailinator.com\nyopmail.com\n")))
		if !waitLog(c, limitsWarning) {
			t.Fatalf("the instance with another signup_per_ip did not warn:\n%s", c.String())
		}
		if n := strings.Count(c.String(), "differing=limits.signup_per_ip "); n != 2 {
			t.Errorf("%d warnings naming only limits.signup_per_ip, want one for each of the two others:\n%s", n, c.String())
		}
		for name, log := range map[string]*lockedBuffer{"first": a, "second": b} {
			if strings.Contains(log.String(), limitsWarning) {
				t.Errorf("the %s instance, with the same domains as the other, warned:\n%s", name, log.String())
			}
		}
	})

	t.Run("built-in list and a file", func(t *testing.T) {
		usePostgres(t)
		builtin, err := web.DisposableDomains("")
		if err != nil {
			t.Fatal(err)
		}
		startLimitsInstance(t, "with the built-in list", "")
		b := startLimitsInstance(t, "with a file",
			withList(writeList(t, t.TempDir(), "disposable.txt", "mailinator.com\n")))
		if !waitLog(b, limitsWarning) {
			t.Fatalf("the instance with a file beside one with the built-in list did not warn:\n%s", b.String())
		}
		for _, want := range []string{"differing=limits.disposable_domains_file ",
			`disposable_list="file, 1 domain, sha256 `,
			fmt.Sprintf(`other_disposable_list="builtin, %d domains, sha256 `, len(builtin))} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("the warning does not hold %s:\n%s", want, b.String())
			}
		}
	})
}
