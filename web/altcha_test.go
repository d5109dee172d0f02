package web

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/altcha-org/altcha-lib-go"
)

// solveAltcha fetches a challenge from the server and solves it with the
// library's own solver, as the widget does in a browser.
func solveAltcha(t *testing.T, h *harness) string {
	t.Helper()
	rec := h.get(t, "/altcha/challenge")
	wantStatus(t, rec, http.StatusOK)
	var ch altcha.Challenge
	if err := json.Unmarshal(rec.Body.Bytes(), &ch); err != nil {
		t.Fatalf("challenge: %v\n%s", err, rec.Body.String())
	}
	if ch.Algorithm != "SHA-256" || ch.MaxNumber != altchaMaxNumber || ch.Signature == "" {
		t.Fatalf("challenge = %+v", ch)
	}
	sol, err := altcha.SolveChallenge(ch.Challenge, ch.Salt, altcha.SHA256, int(ch.MaxNumber), 0, nil)
	if err != nil || sol == nil {
		t.Fatalf("no solution: %v", err)
	}
	raw, err := json.Marshal(altcha.Payload{
		Algorithm: ch.Algorithm, Challenge: ch.Challenge, Number: int64(sol.Number), Salt: ch.Salt, Signature: ch.Signature,
	})
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func TestAltchaAlways(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Altcha = AltchaAlways })
	obs := observe(h, nil)

	rec := h.get(t, "/")
	wantBody(t, rec, `name="altcha" value="" data-challenge="/altcha/challenge"`, `<script src="/static/altcha.js?v=`)
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP = %q", csp)
	}
	src := regexp.MustCompile(`<script src="([^"]+)"`).FindStringSubmatch(rec.Body.String())[1]
	js := h.get(t, src)
	wantStatus(t, js, http.StatusOK)
	wantHeader(t, js, "Content-Type", "text/javascript; charset=utf-8")
	wantBody(t, js, "crypto.subtle.digest", `name="altcha"`)

	// A bot that skips the challenge is refused, on both routes.
	rec = h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "bot@example.org")))
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	wantBody(t, rec, "Please complete the check", `data-challenge="/altcha/challenge"`)
	rec = h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"bot@example.org"}`))
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	wantBody(t, rec, "Please complete the check")
	// A forged solution too.
	forged := base64.StdEncoding.EncodeToString([]byte(`{"algorithm":"SHA-256","challenge":"00","number":1,"salt":"x","signature":"00"}`))
	rec = h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"bot@example.org","altcha":"`+forged+`"}`))
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	if n := h.subs.callsOf("Signup"); n != 0 {
		t.Fatalf("Signup calls = %d, want 0", n)
	}
	if got := obs.count(SignupAltcha); got != 3 {
		t.Errorf("altcha_required = %d, want 3", got)
	}

	// A solution computed with the library's solver passes, once.
	payload := solveAltcha(t, h)
	rec = h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"jane@example.org","altcha":"`+payload+`"}`))
	wantStatus(t, rec, http.StatusAccepted)
	rec = h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"joe@example.org","altcha":"`+payload+`"}`))
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	rec = h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@example.org", "altcha", solveAltcha(t, h))))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, "Check your inbox")
	if n := h.subs.callsOf("Signup"); n != 2 {
		t.Errorf("Signup calls = %d, want 2", n)
	}
}

func TestAltchaAttackMode(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	h := newHarness(t, func(c *Config) {
		c.Altcha = AltchaAttack
		c.AttackThreshold = 3
		c.AttackCooldown = 10 * time.Minute
	})
	observe(h, &now)
	signup := func(extra ...string) int {
		t.Helper()
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form(append([]string{"email", "jane@example.org"}, extra...)...)))
		return rec.Code
	}
	wantNoBody(t, h.get(t, "/"), "<script")
	for i := range 3 {
		if got := signup(); got != http.StatusOK {
			t.Fatalf("signup %d: status %d before the spike", i+1, got)
		}
		now = now.Add(time.Second)
	}
	// The fourth in a minute passes the threshold: from now on everyone
	// must solve the challenge.
	if got := signup(); got != http.StatusUnprocessableEntity {
		t.Fatalf("status = %d at the spike, want 422", got)
	}
	wantBody(t, h.get(t, "/"), `<script src="/static/altcha.js`)
	if got := signup("altcha", solveAltcha(t, h)); got != http.StatusOK {
		t.Errorf("status = %d with a solution, want 200", got)
	}
	now = now.Add(9 * time.Minute)
	if got := signup(); got != http.StatusUnprocessableEntity {
		t.Errorf("status = %d during the cooldown, want 422", got)
	}
	// The cooldown runs from the last spike; quiet for longer, it ends.
	now = now.Add(11 * time.Minute)
	if got := signup(); got != http.StatusOK {
		t.Errorf("status = %d after the cooldown, want 200", got)
	}
}

func TestAltchaOff(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, h.get(t, "/altcha/challenge"), http.StatusNotFound)
	wantNoBody(t, h.get(t, "/"), "<script", `name="altcha"`)

	cfg := testConfig()
	cfg.Altcha = "sometimes"
	if _, err := New(cfg, Deps{Subscribers: newFakeSubs()}); err == nil || !strings.Contains(err.Error(), "Altcha") {
		t.Errorf("err = %v, want one naming Altcha", err)
	}
}
