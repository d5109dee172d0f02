// Package apitokens is the admin API's credentials: named tokens made with
// "herald tokens create", scoped read or write, revocable, of which only a
// SHA-256 hash is ever stored. A token is shown once, when it is made.
package apitokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"herald"
)

// Scope is what a token may do.
type Scope string

// The scopes. A read token may only read (GET and HEAD); a write token may
// do anything the API offers.
const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
)

// Valid reports whether s is a known scope.
func (s Scope) Valid() bool { return s == ScopeRead || s == ScopeWrite }

// Prefix starts every token Herald makes, so that a token pasted somewhere
// it should not be (a repository, a ticket) can be recognised by scanners.
const Prefix = "hrld_"

// MaxNameLen bounds a token's name.
const MaxNameLen = 100

// TouchInterval is the least time between two writes of a token's
// LastUsedAt: the API answers requests without writing to the database for
// each of them.
const TouchInterval = time.Minute

// Token is one stored API token. The token itself is not kept: only Hash.
type Token struct {
	ID         int64
	Name       string
	Hash       []byte // SHA-256 of the token
	Scope      Scope
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used
	RevokedAt  time.Time // zero: not revoked
}

// Revoked reports whether the token was revoked.
func (t *Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// Store keeps API tokens. Methods return *herald.Error with ENOTFOUND when
// a looked-up token does not exist and ECONFLICT on a duplicate name or
// hash.
type Store interface {
	// CreateAPIToken inserts t and sets t.ID; ECONFLICT when a token of
	// that name or hash exists (revoked ones included).
	CreateAPIToken(ctx context.Context, t *Token) error
	// FindAPITokenByHash returns the token with that hash, revoked or
	// not, or ENOTFOUND.
	FindAPITokenByHash(ctx context.Context, hash []byte) (*Token, error)
	// FindAPITokenByID returns the token with that id, revoked or not,
	// or ENOTFOUND.
	FindAPITokenByID(ctx context.Context, id int64) (*Token, error)
	// FindAPITokens returns every token, revoked ones included, by id.
	FindAPITokens(ctx context.Context) ([]*Token, error)
	// RevokeAPIToken sets the revocation time of the named token if it is
	// not revoked yet and returns the token; ENOTFOUND for an unknown name.
	RevokeAPIToken(ctx context.Context, name string, at time.Time) (*Token, error)
	// TouchAPIToken sets a token's LastUsedAt; ENOTFOUND for an unknown id.
	TouchAPIToken(ctx context.Context, id int64, at time.Time) error
}

// Options configure a Service.
type Options struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
}

// Service makes, lists, revokes and checks API tokens.
type Service struct {
	store  Store
	now    func() time.Time
	logger *slog.Logger

	mu      sync.Mutex
	touched map[int64]time.Time // when this process last wrote a token's LastUsedAt
}

// NewService returns a Service over store.
func NewService(store Store, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, now: opts.Now, logger: opts.Logger, touched: make(map[int64]time.Time)}
}

// Hash returns the SHA-256 of a token, the only form in which it is stored.
// Looking a token up by its hash compares no secret byte by byte, so the
// look-up's time tells an attacker nothing about the token.
func Hash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// NewToken returns a fresh random token: Prefix and 32 random bytes in
// base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckName validates a token's name: 1 to MaxNameLen characters, printable,
// no spaces at either end.
func CheckName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return herald.Errorf(herald.EINVALID, "name: a token needs a name, such as the script that will use it")
	case name != strings.TrimSpace(name):
		return herald.Errorf(herald.EINVALID, "name: must not start or end with a space")
	case !utf8.ValidString(name):
		return herald.Errorf(herald.EINVALID, "name: must be valid UTF-8")
	case utf8.RuneCountInString(name) > MaxNameLen:
		return herald.Errorf(herald.EINVALID, "name: must be at most %d characters", MaxNameLen)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return herald.Errorf(herald.EINVALID, "name: must not contain control characters")
		}
	}
	return nil
}

// Create makes a token with the given name and scope and returns it with the
// token itself, which is shown once and never stored. EINVALID for a bad
// name or scope, ECONFLICT when the name is taken.
func (s *Service) Create(ctx context.Context, name string, scope Scope) (*Token, string, error) {
	if err := CheckName(name); err != nil {
		return nil, "", err
	}
	if !scope.Valid() {
		return nil, "", herald.Errorf(herald.EINVALID, "scope: must be read or write, got %q", scope)
	}
	raw, err := NewToken()
	if err != nil {
		return nil, "", err
	}
	t := &Token{Name: name, Hash: Hash(raw), Scope: scope, CreatedAt: s.now().UTC()}
	if err := s.store.CreateAPIToken(ctx, t); err != nil {
		if herald.IsCode(err, herald.ECONFLICT) {
			return nil, "", herald.Errorf(herald.ECONFLICT, "A token named %q exists already: choose another name, or revoke it first (a revoked name stays taken).", name)
		}
		return nil, "", fmt.Errorf("create token: %w", err)
	}
	s.logger.InfoContext(ctx, "api token created", "token_id", t.ID, "scope", string(scope))
	return t, raw, nil
}

// List returns every token, revoked ones included, oldest first.
func (s *Service) List(ctx context.Context) ([]*Token, error) {
	ts, err := s.store.FindAPITokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// Revoke revokes the named token at once; revoking a revoked token changes
// nothing. ENOTFOUND for an unknown name.
func (s *Service) Revoke(ctx context.Context, name string) (*Token, error) {
	t, err := s.store.RevokeAPIToken(ctx, name, s.now().UTC())
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, herald.Errorf(herald.ENOTFOUND, "There is no token named %q.", name)
	} else if err != nil {
		return nil, fmt.Errorf("revoke token: %w", err)
	}
	s.logger.InfoContext(ctx, "api token revoked", "token_id", t.ID)
	return t, nil
}

// Authenticate returns the live token matching raw: EUNAUTHORIZED when
// there is none or it was revoked. The token is read from the store on
// every call, so a revocation made by another process counts at once; its
// LastUsedAt is written at most once per TouchInterval.
func (s *Service) Authenticate(ctx context.Context, raw string) (*Token, error) {
	denied := herald.Errorf(herald.EUNAUTHORIZED, "A valid admin token is required: send Authorization: Bearer TOKEN.")
	if raw == "" || len(raw) > 512 {
		return nil, denied
	}
	t, err := s.store.FindAPITokenByHash(ctx, Hash(raw))
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, denied
	} else if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if t.Revoked() {
		return nil, herald.Errorf(herald.EUNAUTHORIZED, "This token was revoked.")
	}
	now := s.now().UTC()
	if s.dueForTouch(t, now) {
		// A failed write loses a timestamp, not the request.
		if err := s.store.TouchAPIToken(ctx, t.ID, now); err != nil {
			s.logger.WarnContext(ctx, "record api token use", "token_id", t.ID, "error", err.Error())
		}
	}
	return t, nil
}

// Live returns nil when the token with that id exists and is not revoked,
// EUNAUTHORIZED otherwise. It is read from the store on every call, so a
// revocation made by another process counts at once: an admin session
// opened with a token checks it on every request.
func (s *Service) Live(ctx context.Context, id int64) error {
	t, err := s.store.FindAPITokenByID(ctx, id)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return herald.Errorf(herald.EUNAUTHORIZED, "The token this session was opened with no longer exists.")
	} else if err != nil {
		return fmt.Errorf("check token: %w", err)
	}
	if t.Revoked() {
		return herald.Errorf(herald.EUNAUTHORIZED, "The token this session was opened with was revoked.")
	}
	return nil
}

// dueForTouch reports whether the token's use at now should be written, and
// if so notes that this process is writing it: concurrent requests that
// read the same stale LastUsedAt write it once.
func (s *Service) dueForTouch(t *Token, now time.Time) bool {
	if now.Sub(t.LastUsedAt) < TouchInterval {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.touched[t.ID]; ok && now.Sub(last) < TouchInterval {
		return false
	}
	s.touched[t.ID] = now
	return true
}
