package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// fieldStamp is the signup form's hidden field that carries when the form
// was served, signed.
const fieldStamp = "stamp"

// stampMaxAge is how old a form stamp may be. A reader may leave the page
// open for a while, so it is generous; a stamp older than this is stale.
const stampMaxAge = 24 * time.Hour

// Signup results of the defences, as SignupObserver.Signup receives them.
const (
	SignupTooFast       = "too_fast"       // a form came back faster than MinFillTime, or with a forged or stale stamp
	SignupSubnetLimited = "subnet_limited" // refused by the per-subnet limit (429)
)

// signupKeys are the keys the signup defences sign with, each derived from
// Deps.SignupKey for one purpose, so that a stamp never passes for an
// ALTCHA signature or the other way round. limits keys the hashes that
// stand for client addresses in the shared limits (Deps.Limits).
type signupKeys struct {
	stamp  []byte
	altcha []byte
	limits []byte
}

// newSignupKeys derives the keys from secret; an empty secret gets a random
// one, good for this process only (stamps and challenges then do not
// survive a restart, nor cross instances).
func newSignupKeys(secret []byte) (signupKeys, error) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return signupKeys{}, fmt.Errorf("web: random signup key: %w", err)
		}
	}
	derive := func(purpose string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("herald signup " + purpose))
		return m.Sum(nil)
	}
	return signupKeys{stamp: derive("stamp"), altcha: derive("altcha"), limits: derive("limits")}, nil
}

// formStamp is the signed time a form is served at: "<unix>.<mac>".
func formStamp(key []byte, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return ts + "." + stampMAC(key, ts)
}

func stampMAC(key []byte, ts string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// checkStamp reports whether stamp is ours and was served at least minFill
// and at most stampMaxAge before now.
func checkStamp(key []byte, stamp string, now time.Time, minFill time.Duration) bool {
	ts, mac, ok := strings.Cut(stamp, ".")
	if !ok || len(ts) > 20 {
		return false
	}
	if !hmac.Equal([]byte(mac), []byte(stampMAC(key, ts))) {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	age := now.Sub(time.Unix(sec, 0))
	return age >= minFill && age <= stampMaxAge
}

// subnetKey is the network a client IP belongs to for the per-subnet
// limit: its /24 for IPv4, its /48 for IPv6 (a site's usual allocation).
func subnetKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		return ip
	}
	if v4 := parsed.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String() + "/24"
	}
	return parsed.Mask(net.CIDRMask(48, 128)).String() + "/48"
}
