package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingObserver is a SignupObserver that counts results.
type countingObserver struct {
	mu     sync.Mutex
	counts map[string]int
}

func (o *countingObserver) Signup(result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[result]++
}

func (o *countingObserver) count(result string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[result]
}

// observe gives the harness's server a counting observer and a clock the
// test moves.
func observe(h *harness, now *time.Time) *countingObserver {
	obs := &countingObserver{}
	h.srv.signups = obs
	if now != nil {
		h.srv.now = func() time.Time { return *now }
	}
	return obs
}

var stampRE = regexp.MustCompile(`name="stamp" value="([^"]+)"`)

// pageStamp returns the stamp the signup page carries.
func pageStamp(t *testing.T, h *harness) string {
	t.Helper()
	rec := h.get(t, "/")
	wantStatus(t, rec, http.StatusOK)
	m := stampRE.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("the signup page has no stamp:\n%s", rec.Body.String())
	}
	return m[1]
}

func TestSubscribeMinFillTime(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	h := newHarness(t, func(c *Config) { c.MinFillTime = 2 * time.Second })
	obs := observe(h, &now)
	stamp := pageStamp(t, h)
	accepted := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org")))
	wantStatus(t, accepted, http.StatusOK)

	tests := []struct {
		name   string
		after  time.Duration
		stamp  string
		signup bool
	}{
		{"too fast", time.Second, stamp, false},
		{"in time", 3 * time.Second, stamp, true},
		{"forged", 3 * time.Second, strconv.FormatInt(now.Unix(), 10) + ".AAAAAAAAAAAAAAAAAAAAAA", false},
		{"garbage", 3 * time.Second, "yesterday", false},
		{"stale", 25 * time.Hour, stamp, false},
		{"no stamp (a news site's own form)", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := now
			defer func() { now = saved }()
			now = now.Add(tt.after)
			before := h.subs.callsOf("Signup")
			rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org", "stamp", tt.stamp)))
			wantStatus(t, rec, http.StatusOK)
			if rec.Body.String() != accepted.Body.String() {
				t.Error("the answer differs from an accepted signup's")
			}
			if got := h.subs.callsOf("Signup") - before; got != map[bool]int{true: 1}[tt.signup] {
				t.Errorf("Signup calls = %d, want signup %v", got, tt.signup)
			}
		})
	}
	if got := obs.count(SignupTooFast); got != 4 {
		t.Errorf("too_fast = %d, want 4", got)
	}

	// JSON signups are not subject to it, stamp or not.
	rec := h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"joe@example.org","stamp":"x"}`))
	wantStatus(t, rec, http.StatusAccepted)
}

// A form shown again after an error keeps its first stamp.
func TestSignupErrorKeepsStamp(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	h := newHarness(t, func(c *Config) { c.MinFillTime = 2 * time.Second })
	observe(h, &now)
	stamp := pageStamp(t, h)
	now = now.Add(time.Minute)
	rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "not-an-address", "stamp", stamp)))
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	wantBody(t, rec, `name="stamp" value="`+stamp+`"`)
}

func TestSubscribeSubnetLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SignupPerSubnet = 2 })
	obs := observe(h, nil)
	from := func(ip string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/subscribe", strings.NewReader(form("email", "jane@example.org")))
		req.Header.Set("Content-Type", formType)
		req.RemoteAddr = ip + ":4321"
		rec := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	wantStatus(t, from("198.51.100.1"), http.StatusOK)
	wantStatus(t, from("198.51.100.2"), http.StatusOK)
	rec := from("198.51.100.3")
	wantStatus(t, rec, http.StatusTooManyRequests)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	wantStatus(t, from("198.51.101.1"), http.StatusOK)
	wantStatus(t, from("2001:db8:1:1::1"), http.StatusOK)
	wantStatus(t, from("2001:db8:1:2::1"), http.StatusOK)
	wantStatus(t, from("2001:db8:1:3::1"), http.StatusTooManyRequests)
	wantStatus(t, from("2001:db8:2::1"), http.StatusOK)
	if got := obs.count(SignupSubnetLimited); got != 2 {
		t.Errorf("subnet_limited = %d, want 2", got)
	}
}

func TestSubnetKey(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.77", "192.0.2.0/24"},
		{"::ffff:192.0.2.77", "192.0.2.0/24"},
		{"2001:db8:aa:bb::1", "2001:db8:aa::/48"},
		{"not an ip", "not an ip"},
	}
	for _, tt := range tests {
		if got := subnetKey(tt.ip); got != tt.want {
			t.Errorf("subnetKey(%q) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

// FuzzSubscribe posts arbitrary bodies, form and JSON, to the signup: the
// answer is never a server error, and a stamp or solution the fuzzer makes
// up never passes for ours.
func FuzzSubscribe(f *testing.F) {
	f.Add(0, "email=jane%40example.org&name=Jane&stamp=1.x")
	f.Add(1, `{"email":"jane@example.org","newsletters":["daily"],"altcha":"e30="}`)
	f.Add(0, "email=%0d%0abcc%3Ax%40y.z&website=&newsletters_offered=1")
	f.Add(1, `{"email":["x"]}`)
	h := newHarness(f, func(c *Config) { c.MinFillTime = time.Second; c.Altcha = AltchaAlways })
	f.Fuzz(func(t *testing.T, kind int, body string) {
		ct := formType
		if kind%2 != 0 {
			ct = "application/json"
		}
		before := h.subs.callsOf("Signup")
		rec := h.do(t, http.MethodPost, "/subscribe", ct, strings.NewReader(body))
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if h.subs.callsOf("Signup") != before {
			t.Fatalf("a made-up body passed the proof of work: %q", body)
		}
	})
}
