package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"herald/store/postgres"
	"herald/store/postgres/pgtest"
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
	tests := []struct {
		name   string
		change func(*LimitsConfig)
		key    string
	}{
		{"per ip", func(l *LimitsConfig) { l.SignupPerIP = 3 }, "limits.signup_per_ip"},
		{"per subnet", func(l *LimitsConfig) { l.SignupPerSubnet = 0 }, "limits.signup_per_subnet"},
		{"fill time", func(l *LimitsConfig) { l.MinFillTime = 0 }, "limits.min_fill_time"},
		{"disposable list", func(l *LimitsConfig) { l.DisposableDomainsFile = "/etc/herald/my list.txt" }, "limits.disposable_domains_file"},
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

// Two `herald serve` on one PostgreSQL schema with the same limits
// settings say nothing; a third with another limits.signup_per_ip warns,
// at start, that the others differ, naming the key and not the values.
func TestServeWarnsOfDifferentLimits(t *testing.T) {
	pgtest.Require(t)
	usePostgres(t)
	start := func(perIP string) *lockedBuffer {
		t.Helper()
		addr := freeAddr(t)
		base := "http://" + addr
		path := testConfig(t, "limits:\n  signup_per_ip: "+perIP+"\nhttp:\n  addr: "+addr+"\n  base_url: "+base+"\n  shutdown_timeout: 5s\n")
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
				t.Logf("instance with signup_per_ip %s:\n%s", perIP, stderr.String())
			}
		})
		waitReady(t, base, done, stderr)
		return stderr
	}
	const warning = "another instance on this database runs with different limits.* settings"
	waitLog := func(log *lockedBuffer, want string) bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(log.String(), want) {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}

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
