package web

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLimits is a SignupLimits in memory: one fixed count per (kind, key),
// with a switch that makes every call fail, or hang until its deadline.
type fakeLimits struct {
	mu      sync.Mutex
	counts  map[string]int
	spent   map[string]bool
	until   time.Time
	keys    [][]byte // every key Hit was given
	adds    [][]byte // every key Add was given
	failing error
	hang    bool
}

func (f *fakeLimits) fail(ctx context.Context) error {
	f.mu.Lock()
	hang, err := f.hang, f.failing
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeLimits) Hit(ctx context.Context, _ time.Time, kinds []string, keys [][]byte, limits []int) (int, int, time.Duration, error) {
	if err := f.fail(ctx); err != nil {
		return -1, 0, 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for i := range kinds {
		f.keys = append(f.keys, keys[i])
		k := kinds[i] + "/" + string(keys[i])
		if limits[i] > 0 && f.counts[k] >= limits[i] {
			return i, f.counts[k], 42 * time.Second, nil
		}
		f.counts[k]++
		n = f.counts[k]
	}
	return -1, n, 0, nil
}

func (f *fakeLimits) Add(ctx context.Context, _ time.Time, kind string, key []byte, n int) (int, error) {
	if err := f.fail(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds = append(f.adds, key)
	f.counts[kind+"/"+string(key)] += n
	return f.counts[kind+"/"+string(key)], nil
}

func (f *fakeLimits) AttackUntil(ctx context.Context) (time.Time, error) {
	if err := f.fail(ctx); err != nil {
		return time.Time{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.until, nil
}

func (f *fakeLimits) ExtendAttack(ctx context.Context, until time.Time) (time.Time, error) {
	if err := f.fail(ctx); err != nil {
		return time.Time{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until = later(f.until, until)
	return f.until, nil
}

func (f *fakeLimits) Spend(ctx context.Context, id []byte, _ time.Time) (bool, error) {
	if err := f.fail(ctx); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spent[string(id)] {
		return false, nil
	}
	f.spent[string(id)] = true
	return true, nil
}

func (f *fakeLimits) set(failing error, hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing, f.hang = failing, hang
}

func newLimitsHarness(t *testing.T, now *time.Time, mutate func(*Config)) (*harness, *fakeLimits) {
	t.Helper()
	f := &fakeLimits{counts: map[string]int{}, spent: map[string]bool{}}
	cfg := testConfig()
	mutate(&cfg)
	h := &harness{subs: newFakeSubs(), arts: newFakeArticles(), digs: newFakeDigests(), log: &syncBuffer{}}
	var err error
	h.srv, err = New(cfg, Deps{
		Subscribers: h.subs,
		Logger:      slog.New(slog.NewJSONHandler(h.log, nil)),
		Limits:      f,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv.now = func() time.Time { return *now }
	return h, f
}

// TestSharedLimitsSeeNoAddress: the shared limits get keyed hashes, one per
// client (a /64 for IPv6) and per network, never an address.
func TestSharedLimitsSeeNoAddress(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	h, f := newLimitsHarness(t, &now, func(c *Config) {
		c.SignupPerIP = 2
		c.SignupPerSubnet = 10
		c.Altcha = AltchaAttack
	})
	for _, ip := range []string{"198.51.100.7", "2001:db8::1", "2001:db8::2"} {
		wantStatus(t, signupFrom(h, ip), http.StatusOK)
		now = now.Add(rateFlushEvery) // each signup reaches the shared rate at once
	}
	rec := signupFrom(h, "2001:db8::3")
	wantStatus(t, rec, http.StatusTooManyRequests)
	wantHeader(t, rec, "Retry-After", "42")
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		for _, addr := range []string{"198.51.100", "2001:db8"} {
			if bytes.Contains(k, []byte(addr)) {
				t.Errorf("key %q holds the address", k)
			}
		}
		if len(k) != 16 {
			t.Errorf("key %x is %d bytes, want a 16-byte hash", k, len(k))
		}
	}
	// ip and subnet for each of the three taken; ip for the refused.
	if len(f.keys) != 3*2+1 {
		t.Errorf("keys given to Hit = %d, want 7", len(f.keys))
	}
	if len(f.adds) != 3 || len(f.adds[0]) != 0 || f.counts["rate/"] != 3 {
		t.Errorf("rate = %d by %d additions, want 3 by 3 with an empty key", f.counts["rate/"], len(f.adds))
	}
}

// TestSharedRateAddedOncePerSecond: the signups of one second reach the
// shared rate in one addition, and count here at once.
func TestSharedRateAddedOncePerSecond(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	h, f := newLimitsHarness(t, &now, func(c *Config) {
		c.Altcha = AltchaAttack
		c.AttackThreshold = 4
	})
	for range 4 {
		wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusOK)
	}
	f.mu.Lock()
	adds, rate := len(f.adds), f.counts["rate/"]
	f.mu.Unlock()
	if adds != 1 || rate != 1 {
		t.Errorf("after four signups in one second: %d additions, rate %d; want 1 and 1 (the first)", adds, rate)
	}
	// The fifth is over the threshold on this instance's own count of
	// the three not yet added.
	wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusUnprocessableEntity)
	now = now.Add(rateFlushEvery)
	signupFrom(h, "192.0.2.1")
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.adds) != 2 || f.counts["rate/"] != 6 {
		t.Errorf("a second on: %d additions, rate %d; want 2 and 6", len(f.adds), f.counts["rate/"])
	}
}

// TestSharedLimitsFailSafe: while the shared limits fail or hang, signups
// are judged by the instance's own counts, never answered 500, and the
// failure is logged once; after limitsRetry the shared ones are asked
// again.
func TestSharedLimitsFailSafe(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		hang bool
	}{
		{"failing", errors.New("connection refused"), false},
		{"hanging", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
			h, f := newLimitsHarness(t, &now, func(c *Config) {
				c.SignupPerIP = 2
				c.Altcha = AltchaAttack
				c.AttackThreshold = 100
			})
			wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusOK)
			f.set(tc.err, tc.hang)
			start := time.Now()
			// The own count starts afresh: two more, then refused.
			wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusOK)
			wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusOK)
			wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusTooManyRequests)
			wantBody(t, h.get(t, "/"), "Don't miss a story")
			// Only the first call waited for the failure.
			if d := time.Since(start); d > limitsTimeout+400*time.Millisecond {
				t.Errorf("four requests took %v with the shared limits down", d)
			}
			if n := strings.Count(h.log.String(), "do not answer"); n != 1 {
				t.Errorf("logged the failure %d times, want once:\n%s", n, h.log.String())
			}
			f.set(nil, false)
			now = now.Add(limitsRetry)
			// Back on the shared count, which holds one signup: one more.
			wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusOK)
			wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusTooManyRequests)
			if !strings.Contains(h.log.String(), "answer again") {
				t.Errorf("the recovery was not logged:\n%s", h.log.String())
			}
			if strings.Contains(h.log.String(), `"level":"ERROR"`) {
				t.Errorf("an error was logged:\n%s", h.log.String())
			}
		})
	}
}

// TestSharedLimitsAttackAndSpend: attack mode turned on elsewhere (the
// shared end of it) holds here, attack mode turned on here is written
// there, and a solution spent is refused once the shared set has it.
func TestSharedLimitsAttackAndSpend(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	h, f := newLimitsHarness(t, &now, func(c *Config) {
		c.Altcha = AltchaAttack
		c.AttackThreshold = 2
		c.AttackCooldown = time.Minute
	})
	wantNoBody(t, h.get(t, "/"), "<script")
	f.mu.Lock()
	f.until = now.Add(time.Minute)
	f.mu.Unlock()
	now = now.Add(attackRecheck)
	wantBody(t, h.get(t, "/"), `<script src="/static/altcha.js`)
	wantStatus(t, signupFrom(h, "192.0.2.1"), http.StatusUnprocessableEntity)
	payload := solveAltcha(t, h)
	wantStatus(t, signupFrom(h, "192.0.2.1", "altcha", payload), http.StatusOK)
	wantStatus(t, signupFrom(h, "192.0.2.1", "altcha", payload), http.StatusUnprocessableEntity)
	if len(f.spent) != 1 {
		t.Errorf("spent = %d, want 1", len(f.spent))
	}

	// Three signups in a minute here, over the threshold of two: the end
	// is moved in the shared limits.
	now = now.Add(5 * time.Minute)
	for range 3 {
		signupFrom(h, "192.0.2.1")
	}
	f.mu.Lock()
	until := f.until
	f.mu.Unlock()
	if want := now.Add(time.Minute); !until.Equal(want) {
		t.Errorf("shared end of attack mode = %v, want %v", until, want)
	}
}
