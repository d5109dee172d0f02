package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"herald/store/postgres"
	"herald/web"
)

// Instances on one PostgreSQL database count signups against the same
// counters (postgres.SignupLimits), so they must all use the same limits.*
// settings: an instance with a lower limits.signup_per_ip refuses what the
// others let through, and attack mode turns on at different rates. Each
// instance records its settings in the database and warns when another
// one running beside it records different ones.

// How often an instance records its limits settings, and how recent
// another instance's record must be to count as running.
const (
	limitsCheckInterval = time.Minute
	limitsCheckWithin   = 5 * time.Minute
)

// limitsRecorder is what the limits check asks of the database
// (*postgres.DB).
type limitsRecorder interface {
	// RecordLimits records instance's settings at now and returns the
	// other instances' records made within that window whose settings
	// differ.
	RecordLimits(ctx context.Context, instance, settings string, now time.Time, within time.Duration) ([]postgres.LimitsRecord, error)
	// ForgetLimits deletes instance's record.
	ForgetLimits(ctx context.Context, instance string) error
}

// limitsSettings encodes the limits.* settings: a fingerprint (the first
// 16 hex digits of a SHA-256 over the rest), a space, then every key and
// its value, URL-encoded in key order. Every key of LimitsConfig is in it,
// so a key added later is compared too. None is a secret. A value is the
// setting's, except limits.disposable_domains_file's, which is the list it
// gives (disposableList): two paths to the same list are the same setting,
// one path to two lists is not.
func limitsSettings(l LimitsConfig) string {
	v := reflect.ValueOf(l)
	q := url.Values{}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if name == disposableKey {
			q.Set(name, disposableList(l.DisposableDomainsFile))
			continue
		}
		q.Set(name, fmt.Sprint(v.Field(i).Interface()))
	}
	enc := q.Encode()
	sum := sha256.Sum256([]byte(enc))
	return hex.EncodeToString(sum[:8]) + " " + enc
}

// disposableKey is limits.disposable_domains_file in the encoding.
const disposableKey = "disposable_domains_file"

// disposableList describes the disposable domains list that path gives,
// as web loads it at start: where it comes from ("builtin" when path is
// "", else "file"), how many domains it holds and a SHA-256 over them,
// sorted, one a line. Comments, blank lines, case, repeats and order in
// the file do not change it; the path is not in it. The built-in list is
// told apart from a file even with the same domains: it changes with
// Herald's version, a file does not. A file that does not load (serve
// refuses to start with it: unreadable, or a line that is not a
// domain) is "file does not load".
func disposableList(path string) string {
	domains, err := web.DisposableDomains(path)
	if err != nil {
		return "file does not load"
	}
	h := sha256.New()
	for _, d := range domains {
		h.Write([]byte(d + "\n"))
	}
	from := "file"
	if path == "" {
		from = "builtin"
	}
	noun := "domains"
	if len(domains) == 1 {
		noun = "domain"
	}
	return fmt.Sprintf("%s, %d %s, sha256 %x", from, len(domains), noun, h.Sum(nil))
}

// limitsValue returns key's value in an encoding ("" when it has none).
func limitsValue(settings, key string) string {
	_, enc, _ := strings.Cut(settings, " ")
	q, _ := url.ParseQuery(enc)
	return q.Get(key)
}

// limitsDiff returns the fingerprints of two encodings and the keys
// whose values differ (all keys of either when one does not parse).
func limitsDiff(mine, theirs string) (myFP, theirFP string, keys []string) {
	myFP, myEnc, _ := strings.Cut(mine, " ")
	theirFP, theirEnc, _ := strings.Cut(theirs, " ")
	a, errA := url.ParseQuery(myEnc)
	b, errB := url.ParseQuery(theirEnc)
	seen := map[string]bool{}
	for _, m := range []url.Values{a, b} {
		for k := range m {
			if !seen[k] && (errA != nil || errB != nil || a.Get(k) != b.Get(k) || a.Has(k) != b.Has(k)) {
				keys = append(keys, "limits."+k)
			}
			seen[k] = true
		}
	}
	slices.Sort(keys)
	return myFP, theirFP, keys
}

// limitsCheck records this instance's limits settings every interval and
// warns, once for each instance and settings, when another instance that
// recorded within the window runs with different ones.
type limitsCheck struct {
	db       limitsRecorder
	instance string
	settings string
	interval time.Duration
	within   time.Duration
	now      func() time.Time
	logger   *slog.Logger
	warned   map[string]bool
}

// newLimitsCheck returns the check of cfg's limits settings on db, for an
// instance named after its host and process, with a random part so that
// two instances in look-alike containers differ.
func newLimitsCheck(cfg *Config, db limitsRecorder, logger *slog.Logger) *limitsCheck {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return &limitsCheck{
		db:       db,
		instance: fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		settings: limitsSettings(cfg.Limits),
		interval: limitsCheckInterval,
		within:   limitsCheckWithin,
		now:      time.Now,
		logger:   logger,
		warned:   map[string]bool{},
	}
}

// Run records the settings at once and then every interval until ctx
// ends, then deletes the record, so that a stopped instance is not
// compared. A failure is logged and tried again at the next pass: the
// check never stops the server.
func (c *limitsCheck) Run(ctx context.Context) error {
	c.pass(ctx)
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := c.db.ForgetLimits(fctx, c.instance); err != nil {
				c.logger.Warn("could not delete this instance's limits settings record", "error", err)
			}
			return nil
		case <-tick.C:
			c.pass(ctx)
		}
	}
}

// pass records the settings once and warns of instances that differ.
func (c *limitsCheck) pass(ctx context.Context) {
	others, err := c.db.RecordLimits(ctx, c.instance, c.settings, c.now(), c.within)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("could not record this instance's limits settings", "error", err)
		}
		return
	}
	for _, o := range others {
		if c.warned[o.Instance+" "+o.Settings] {
			continue
		}
		c.warned[o.Instance+" "+o.Settings] = true
		mine, theirs, keys := limitsDiff(c.settings, o.Settings)
		attrs := []any{"differing", strings.Join(keys, " "),
			"instance", c.instance, "fingerprint", mine,
			"other_instance", o.Instance, "other_fingerprint", theirs,
			"other_recorded_at", o.RecordedAt.UTC().Format(time.RFC3339)}
		// The two lists, which the operator cannot tell apart by the
		// path: the same path can hold other lists on two hosts.
		if slices.Contains(keys, "limits."+disposableKey) {
			attrs = append(attrs, "disposable_list", limitsValue(c.settings, disposableKey),
				"other_disposable_list", limitsValue(o.Settings, disposableKey))
		}
		c.logger.Warn("another instance on this database runs with different limits.* settings: "+
			"instances share the signup limits' counters, so give them all the same limits.* (see docs/scale-out.md)",
			attrs...)
	}
}
