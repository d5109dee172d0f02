package web

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"herald/store/postgres"
	"herald/store/postgres/pgtest"
)

// newInstances starts two Servers, as two Herald instances behind a load
// balancer: each with a connection pool of its own on one fresh PostgreSQL
// schema, the database's signup limits, the same signup key, and one clock
// the test moves.
func newInstances(t *testing.T, now *time.Time, mutate func(*Config)) [2]*harness {
	t.Helper()
	schema := pgtest.NewSchema(t)
	key := []byte("one signup key for every instance")
	var hs [2]*harness
	for i := range hs {
		db, err := postgres.Open(t.Context(), pgtest.SchemaDSN(t, schema), postgres.WithMaxConns(4))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := db.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig()
		mutate(&cfg)
		h := &harness{subs: newFakeSubs(), arts: newFakeArticles(), digs: newFakeDigests(), log: &syncBuffer{}}
		h.srv, err = New(cfg, Deps{
			Subscribers: h.subs,
			Logger:      slog.New(slog.NewJSONHandler(h.log, nil)),
			Limits:      postgres.NewSignupLimits(db, nil),
			SignupKey:   key,
		})
		if err != nil {
			t.Fatal(err)
		}
		h.srv.now = func() time.Time { return *now }
		hs[i] = h
	}
	t.Cleanup(func() {
		for i, h := range hs {
			if strings.Contains(h.log.String(), "do not answer") {
				t.Errorf("instance %d fell back to its own limits:\n%s", i, h.log.String())
			}
		}
	})
	return hs
}

// signupFrom posts a signup form to h as the client at ip.
func signupFrom(h *harness, ip string, extra ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/subscribe", strings.NewReader(form(append([]string{"email", "jane@example.org"}, extra...)...)))
	req.Header.Set("Content-Type", formType)
	req.RemoteAddr = ip + ":4321"
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// TestSharedLimitsAcrossInstances runs the signup defences on two instances
// sharing one PostgreSQL database: each limit trips at its configured
// number however the load balancer spreads the signups, attack mode turned
// on by one instance holds on the other, and a proof of work spent on one
// is refused by the other.
func TestSharedLimitsAcrossInstances(t *testing.T) {
	pgtest.Require(t)
	// 10 s into a minute, so that no burst below crosses into the next.
	now := time.Date(2026, 3, 4, 5, 6, 10, 0, time.UTC)

	t.Run("per IP and per subnet", func(t *testing.T) {
		hs := newInstances(t, &now, func(c *Config) {
			c.SignupPerIP = 3
			c.SignupPerSubnet = 5
		})
		obs := [2]*countingObserver{observe(hs[0], nil), observe(hs[1], nil)}
		// One client, its signups spread over both instances: the first
		// three pass, the fourth is refused, on either.
		for i := range 3 {
			wantStatus(t, signupFrom(hs[i%2], "192.0.2.1"), http.StatusOK)
		}
		for _, h := range hs {
			rec := signupFrom(h, "192.0.2.1")
			wantStatus(t, rec, http.StatusTooManyRequests)
			if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("Retry-After = %q", ra)
			}
		}
		// A /64 is one client there too.
		wantStatus(t, signupFrom(hs[0], "2001:db8::1"), http.StatusOK)
		wantStatus(t, signupFrom(hs[1], "2001:db8::2"), http.StatusOK)
		wantStatus(t, signupFrom(hs[0], "2001:db8::3"), http.StatusOK)
		wantStatus(t, signupFrom(hs[1], "2001:db8::4"), http.StatusTooManyRequests)
		// Five clients of one /24 over both instances; the sixth is
		// refused by the subnet's limit.
		for i := range 5 {
			wantStatus(t, signupFrom(hs[i%2], "198.51.100."+string(rune('1'+i))), http.StatusOK)
		}
		wantStatus(t, signupFrom(hs[1], "198.51.100.9"), http.StatusTooManyRequests)
		wantStatus(t, signupFrom(hs[0], "198.51.101.1"), http.StatusOK)
		if got := obs[0].count(SignupRateLimited) + obs[1].count(SignupRateLimited); got != 3 {
			t.Errorf("rate_limited = %d, want 3", got)
		}
		if got := obs[0].count(SignupSubnetLimited) + obs[1].count(SignupSubnetLimited); got != 1 {
			t.Errorf("subnet_limited = %d, want 1", got)
		}
		if got := hs[0].subs.callsOf("Signup") + hs[1].subs.callsOf("Signup"); got != 3+3+5+1 {
			t.Errorf("Signup calls = %d, want 12", got)
		}
		// A minute and more later the client may sign up again.
		now = now.Add(2 * time.Minute)
		wantStatus(t, signupFrom(hs[1], "192.0.2.1"), http.StatusOK)
	})

	t.Run("attack mode", func(t *testing.T) {
		hs := newInstances(t, &now, func(c *Config) {
			c.Altcha = AltchaAttack
			c.AttackThreshold = 3
			c.AttackCooldown = 10 * time.Minute
		})
		wantNoBody(t, hs[1].get(t, "/"), "<script")
		// Four signups in a minute, two on each instance, pass the
		// threshold of three: the fourth, on B, already needs the proof.
		// (A second apart: an instance adds its signups to the shared
		// rate at most once a second.)
		for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusOK, http.StatusUnprocessableEntity} {
			if got := signupFrom(hs[i/2], "192.0.2.1").Code; got != want {
				t.Fatalf("signup %d: status %d, want %d", i+1, got, want)
			}
			now = now.Add(rateFlushEvery)
		}
		// A, which saw only two signups, demands it too, once it asks
		// again (it asks the database at most once a second).
		now = now.Add(attackRecheck)
		wantBody(t, hs[0].get(t, "/"), `<script src="/static/altcha.js`)
		wantStatus(t, signupFrom(hs[0], "192.0.2.2"), http.StatusUnprocessableEntity)
		// The cooldown runs on both; quiet for longer, it ends on both.
		now = now.Add(9 * time.Minute)
		wantStatus(t, signupFrom(hs[0], "192.0.2.3"), http.StatusUnprocessableEntity)
		now = now.Add(11 * time.Minute)
		wantStatus(t, signupFrom(hs[1], "192.0.2.4"), http.StatusOK)
		wantNoBody(t, hs[0].get(t, "/"), "<script")
	})

	t.Run("a proof of work buys one signup", func(t *testing.T) {
		hs := newInstances(t, &now, func(c *Config) { c.Altcha = AltchaAlways })
		payload := solveAltcha(t, hs[0])
		wantStatus(t, signupFrom(hs[0], "192.0.2.1", "altcha", payload), http.StatusOK)
		rec := signupFrom(hs[1], "192.0.2.1", "altcha", payload)
		wantStatus(t, rec, http.StatusUnprocessableEntity)
		wantBody(t, rec, "Please complete the check")
		wantStatus(t, signupFrom(hs[0], "192.0.2.1", "altcha", payload), http.StatusUnprocessableEntity)
		// A challenge from one instance, solved, is good on the other.
		wantStatus(t, signupFrom(hs[1], "192.0.2.1", "altcha", solveAltcha(t, hs[0])), http.StatusOK)
		if got := hs[0].subs.callsOf("Signup") + hs[1].subs.callsOf("Signup"); got != 2 {
			t.Errorf("Signup calls = %d, want 2", got)
		}
	})
}
