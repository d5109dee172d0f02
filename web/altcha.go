package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/altcha-org/altcha-lib-go"
	"github.com/labstack/echo/v4"

	"herald"
)

// When the signup form demands ALTCHA's proof of work (Config.Altcha).
const (
	AltchaOff    = "off"    // never
	AltchaAttack = "attack" // while signups spike (attack mode)
	AltchaAlways = "always" // always
)

// Defaults of attack mode.
const (
	DefaultAttackThreshold = 100
	DefaultAttackCooldown  = 10 * time.Minute
)

// altchaScript is the widget's file under templates/web and /static.
const altchaScript = "altcha.js"

// fieldAltcha is the form and JSON field that carries the solved challenge.
const fieldAltcha = "altcha"

// SignupAltcha counts signups refused for lacking a valid proof of work.
const SignupAltcha = "altcha_required"

// msgAltcha is the answer to a signup without a valid proof of work.
const msgAltcha = "Please complete the check"

// Proof-of-work parameters. A browser tries about half of altchaMaxNumber
// SHA-256 hashes on average, well under a second; a bot pays that for
// every signup.
const (
	altchaMaxNumber = 100_000
	altchaExpiry    = 10 * time.Minute
	// altchaMaxUsed caps the memory the spent-solution set may take.
	altchaMaxUsed = 1 << 20
)

// altchaGuard issues and checks challenges; limits keeps the spent
// solutions and runs attack mode.
type altchaGuard struct {
	mode      string
	key       string
	threshold int
	cooldown  time.Duration
	limits    *signupLimits
}

func newAltchaGuard(cfg Config, key []byte) (*altchaGuard, error) {
	mode := cfg.Altcha
	if mode == "" {
		mode = AltchaOff
	}
	if mode != AltchaOff && mode != AltchaAttack && mode != AltchaAlways {
		return nil, fmt.Errorf("web: Altcha must be off, attack or always, got %q", cfg.Altcha)
	}
	if cfg.AttackThreshold < 0 || cfg.AttackCooldown < 0 {
		return nil, fmt.Errorf("web: AttackThreshold and AttackCooldown must be 0 or more")
	}
	g := &altchaGuard{
		mode:      mode,
		key:       base64.RawStdEncoding.EncodeToString(key),
		threshold: cfg.AttackThreshold,
		cooldown:  cfg.AttackCooldown,
	}
	if g.threshold == 0 {
		g.threshold = DefaultAttackThreshold
	}
	if g.cooldown == 0 {
		g.cooldown = DefaultAttackCooldown
	}
	return g, nil
}

// required reports whether a signup at now must carry a proof of work.
func (g *altchaGuard) required(now time.Time) bool {
	switch g.mode {
	case AltchaAlways:
		return true
	case AltchaAttack:
		return g.limits.attackOn(now)
	}
	return false
}

// challenge creates a fresh signed challenge.
func (g *altchaGuard) challenge(now time.Time) (altcha.Challenge, error) {
	expires := now.Add(altchaExpiry)
	return altcha.CreateChallenge(altcha.ChallengeOptions{
		Algorithm: altcha.SHA256,
		MaxNumber: altchaMaxNumber,
		HMACKey:   g.key,
		Expires:   &expires,
	})
}

// verify reports whether payload (the base64 JSON the widget sends) solves
// one of our unexpired challenges that has not been spent, on any instance
// when the limits are shared, and spends it.
func (g *altchaGuard) verify(ctx context.Context, payload string, now time.Time) bool {
	if payload == "" || len(payload) > 2048 {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return false
	}
	var p altcha.Payload
	if err := json.Unmarshal(raw, &p); err != nil || p.Algorithm != string(altcha.SHA256) {
		return false
	}
	ok, err := altcha.VerifySolutionSafe(p, g.key, true)
	if err != nil || !ok {
		return false
	}
	return g.limits.spend(ctx, p.Signature, now, now.Add(altchaExpiry))
}

// handleAltchaChallenge serves a fresh challenge for the widget or a JSON
// client; 404 when ALTCHA is off.
func (s *Server) handleAltchaChallenge(c echo.Context) error {
	if s.altcha.mode == AltchaOff {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	// The library checks expiry against the wall clock, so the challenge
	// is stamped by it too, not by the server's (injectable) clock.
	ch, err := s.altcha.challenge(time.Now())
	if err != nil {
		return fmt.Errorf("altcha challenge: %w", err)
	}
	return c.JSON(http.StatusOK, ch)
}

// refuseWithoutAltcha answers a signup without a valid proof of work, while
// one is required, with 422 "Please complete the check". It reports whether
// it answered.
func (s *Server) refuseWithoutAltcha(c echo.Context, in signupInput) (bool, error) {
	if !s.altcha.required(s.now()) || s.altcha.verify(c.Request().Context(), in.Altcha, time.Now()) {
		return false, nil
	}
	s.observeSignup(SignupAltcha)
	if in.JSON {
		return true, herald.Errorf(herald.EINVALID, "%s: fetch a challenge from GET /altcha/challenge, solve it and send the solution in the %q field.", msgAltcha, fieldAltcha)
	}
	return true, s.signupRejected(c, in, fieldErrors{Form: msgAltcha + "."})
}

// handleAltchaScript serves the widget; its address carries a hash of its
// content, so it may be cached for a year.
func (s *Server) handleAltchaScript(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", s.altchaJS)
}
