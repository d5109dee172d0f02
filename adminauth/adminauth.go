// Package adminauth is how an operator signs in to the admin pages: a
// password set from the command line (stored as an argon2id hash), server
// side sessions (only a SHA-256 of the session id is stored, with its
// expiry), CSRF tokens tied to a session, and short-lived signed blobs that
// carry a form across a login.
package adminauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"herald"
)

// DefaultSessionTTL is how long a session lasts when Options.SessionTTL is
// zero: a working day, after which the operator signs in again.
const DefaultSessionTTL = 12 * time.Hour

// MinPasswordLen and MaxPasswordLen bound an admin password, in characters.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// PasswordSetting names the setting that holds the admin password's hash.
const PasswordSetting = "admin_password"

// keySecret names the secret that signs CSRF tokens and carried forms.
const keySecret = "admin_session_key"

// Session is one signed-in operator's session. The session id itself is
// never stored: only IDHash, its SHA-256.
type Session struct {
	IDHash    []byte
	Via       string // how the operator signed in: "password", "token" or "token:ID"
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Store keeps sessions and settings. Methods return *herald.Error with
// ENOTFOUND for what does not exist.
type Store interface {
	// CreateAdminSession inserts s; ECONFLICT for a duplicate hash.
	CreateAdminSession(ctx context.Context, s *Session) error
	// FindAdminSession returns the session with that hash, expired or
	// not, or ENOTFOUND.
	FindAdminSession(ctx context.Context, idHash []byte) (*Session, error)
	// DeleteAdminSession deletes the session with that hash; deleting one
	// that does not exist is not an error.
	DeleteAdminSession(ctx context.Context, idHash []byte) error
	// DeleteExpiredAdminSessions deletes the sessions that expired at or
	// before now and returns how many.
	DeleteExpiredAdminSessions(ctx context.Context, now time.Time) (int, error)
	// Setting returns the named setting, or ENOTFOUND.
	Setting(ctx context.Context, name string) (string, error)
	// SetSetting creates or replaces the named setting.
	SetSetting(ctx context.Context, name, value string, at time.Time) error
	// Secret returns the named secret, creating it with gen on first use.
	Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
}

// Options configure a Service.
type Options struct {
	SessionTTL time.Duration    // default DefaultSessionTTL
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default: discard
}

// Service checks passwords and keeps sessions.
type Service struct {
	store Store
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger
	key   []byte // signs CSRF tokens and carried forms
}

// NewService returns a Service over store, reading (or making, on first
// use) its signing key.
func NewService(ctx context.Context, store Store, opts Options) (*Service, error) {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	key, err := store.Secret(ctx, keySecret, func() ([]byte, error) { return randomBytes(32) })
	if err != nil {
		return nil, fmt.Errorf("admin session key: %w", err)
	}
	return &Service{store: store, ttl: opts.SessionTTL, now: opts.Now, log: opts.Logger, key: key}, nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	return b, nil
}

// CheckPasswordStrength refuses a password that is too short or too long.
func CheckPasswordStrength(pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return herald.Errorf(herald.EINVALID, "password: must be valid UTF-8")
	case n < MinPasswordLen:
		return herald.Errorf(herald.EINVALID, "password: must be at least %d characters, got %d", MinPasswordLen, n)
	case n > MaxPasswordLen:
		return herald.Errorf(herald.EINVALID, "password: must be at most %d characters", MaxPasswordLen)
	case strings.TrimSpace(pw) != pw:
		return herald.Errorf(herald.EINVALID, "password: must not start or end with a space")
	}
	return nil
}

// SetPassword replaces the admin password. Sessions already open stay open.
func (s *Service) SetPassword(ctx context.Context, pw string) error {
	if err := CheckPasswordStrength(pw); err != nil {
		return err
	}
	enc, err := HashPassword(pw)
	if err != nil {
		return err
	}
	if err := s.store.SetSetting(ctx, PasswordSetting, enc, s.now().UTC()); err != nil {
		return fmt.Errorf("save admin password: %w", err)
	}
	s.log.InfoContext(ctx, "admin password set")
	return nil
}

// HasPassword reports whether an admin password has been set.
func (s *Service) HasPassword(ctx context.Context) (bool, error) {
	_, err := s.store.Setting(ctx, PasswordSetting)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("read admin password: %w", err)
	}
	return true, nil
}

// CheckPassword returns nil when pw is the admin password, EUNAUTHORIZED
// when it is not or none is set.
func (s *Service) CheckPassword(ctx context.Context, pw string) error {
	denied := herald.Errorf(herald.EUNAUTHORIZED, "That password is not right.")
	enc, err := s.store.Setting(ctx, PasswordSetting)
	if herald.IsCode(err, herald.ENOTFOUND) {
		// Hash anyway, so that the answer takes as long with or without
		// a password set.
		_, _ = HashPassword(pw)
		return denied
	} else if err != nil {
		return fmt.Errorf("read admin password: %w", err)
	}
	ok, err := VerifyPassword(enc, pw)
	if err != nil {
		return fmt.Errorf("check admin password: %w", err)
	}
	if !ok {
		return denied
	}
	return nil
}

// hashID is the stored form of a session id.
func hashID(raw string) []byte {
	h := sha256.Sum256([]byte(raw))
	return h[:]
}

// StartSession opens a session and returns its id, to be set in a cookie,
// and the session. via says how the operator signed in. Expired sessions
// are swept on the way.
func (s *Service) StartSession(ctx context.Context, via string) (string, *Session, error) {
	b, err := randomBytes(32)
	if err != nil {
		return "", nil, err
	}
	raw := base64.RawURLEncoding.EncodeToString(b)
	now := s.now().UTC()
	sess := &Session{IDHash: hashID(raw), Via: via, CreatedAt: now, ExpiresAt: now.Add(s.ttl)}
	if err := s.store.CreateAdminSession(ctx, sess); err != nil {
		return "", nil, fmt.Errorf("start admin session: %w", err)
	}
	if n, err := s.store.DeleteExpiredAdminSessions(ctx, now); err != nil {
		s.log.WarnContext(ctx, "sweep expired admin sessions", "error", err.Error())
	} else if n > 0 {
		s.log.DebugContext(ctx, "expired admin sessions swept", "sessions", n)
	}
	return raw, sess, nil
}

// Session returns the live session with id raw: EUNAUTHORIZED when there
// is none or it has expired.
func (s *Service) Session(ctx context.Context, raw string) (*Session, error) {
	denied := herald.Errorf(herald.EUNAUTHORIZED, "Your session has ended: please sign in again.")
	if raw == "" || len(raw) > 128 {
		return nil, denied
	}
	sess, err := s.store.FindAdminSession(ctx, hashID(raw))
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, denied
	} else if err != nil {
		return nil, fmt.Errorf("find admin session: %w", err)
	}
	if !s.now().Before(sess.ExpiresAt) {
		return nil, denied
	}
	return sess, nil
}

// EndSession deletes the session with id raw, if there is one.
func (s *Service) EndSession(ctx context.Context, raw string) error {
	if raw == "" {
		return nil
	}
	if err := s.store.DeleteAdminSession(ctx, hashID(raw)); err != nil {
		return fmt.Errorf("end admin session: %w", err)
	}
	return nil
}

// TTL is how long a session lasts.
func (s *Service) TTL() time.Duration { return s.ttl }

// mac signs parts, each length-prefixed so that no two lists sign alike.
func (s *Service) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// CSRFToken returns the synchronizer token of the session with id raw: the
// same for the whole session, worthless for any other.
func (s *Service) CSRFToken(raw string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", raw))
}

// CheckCSRF reports whether token is the CSRF token of the session raw,
// comparing in constant time.
func (s *Service) CheckCSRF(raw, token string) bool {
	if raw == "" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(s.CSRFToken(raw)), []byte(token)) == 1
}

// Seal signs payload for purpose, valid for ttl, and returns it as one
// URL-safe string. The payload is readable by whoever holds the string:
// Seal is for data the holder sent us anyway, such as a form.
func (s *Service) Seal(purpose string, payload []byte, ttl time.Duration) string {
	exp := s.now().Add(ttl).Unix()
	body := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint64(body, uint64(exp))
	body = append(body, payload...)
	sig := s.mac("seal", purpose, string(body))
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Open checks a string made by Seal for purpose and returns its payload:
// EINVALID when it is malformed, forged or made for another purpose, EGONE
// when it has expired.
func (s *Service) Open(purpose, sealed string) ([]byte, error) {
	bad := herald.Errorf(herald.EINVALID, "The saved form is not valid.")
	b64, sig64, ok := strings.Cut(sealed, ".")
	if !ok {
		return nil, bad
	}
	body, err1 := base64.RawURLEncoding.DecodeString(b64)
	sig, err2 := base64.RawURLEncoding.DecodeString(sig64)
	if err1 != nil || err2 != nil || len(body) < 8 || !hmac.Equal(sig, s.mac("seal", purpose, string(body))) {
		return nil, bad
	}
	if exp := int64(binary.BigEndian.Uint64(body[:8])); s.now().Unix() > exp {
		return nil, herald.Errorf(herald.EGONE, "The saved form has expired.")
	}
	return body[8:], nil
}
