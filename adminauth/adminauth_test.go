package adminauth

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"herald"
)

// memStore keeps sessions and settings in maps.
type memStore struct {
	mu       sync.Mutex
	sessions map[string]Session
	settings map[string]string
	secrets  map[string][]byte
}

func newMemStore() *memStore {
	return &memStore{sessions: map[string]Session{}, settings: map[string]string{}, secrets: map[string][]byte{}}
}

func (m *memStore) CreateAdminSession(_ context.Context, s *Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[string(s.IDHash)]; ok {
		return herald.Errorf(herald.ECONFLICT, "exists")
	}
	m.sessions[string(s.IDHash)] = *s
	return nil
}

func (m *memStore) FindAdminSession(_ context.Context, h []byte) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(h)]
	if !ok {
		return nil, herald.Errorf(herald.ENOTFOUND, "no session")
	}
	return &s, nil
}

func (m *memStore) DeleteAdminSession(_ context.Context, h []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, string(h))
	return nil
}

func (m *memStore) DeleteExpiredAdminSessions(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, s := range m.sessions {
		if !s.ExpiresAt.After(now) {
			delete(m.sessions, k)
			n++
		}
	}
	return n, nil
}

func (m *memStore) Setting(_ context.Context, name string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.settings[name]
	if !ok {
		return "", herald.Errorf(herald.ENOTFOUND, "no setting")
	}
	return v, nil
}

func (m *memStore) SetSetting(_ context.Context, name, value string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settings[name] = value
	return nil
}

func (m *memStore) Secret(_ context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.secrets[name]; ok {
		return v, nil
	}
	v, err := gen()
	if err != nil {
		return nil, err
	}
	m.secrets[name] = v
	return v, nil
}

func newTestService(t *testing.T) (*Service, *memStore, *time.Time) {
	t.Helper()
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	st := newMemStore()
	s, err := NewService(context.Background(), st, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, st, &now
}

func TestPasswordHash(t *testing.T) {
	enc, err := HashPassword("a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash = %q, want an argon2id PHC string", enc)
	}
	if again, _ := HashPassword("a long enough password"); again == enc {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, tt := range []struct {
		pw   string
		want bool
	}{{"a long enough password", true}, {"a long enough passwor", false}, {"", false}} {
		if got, err := VerifyPassword(enc, tt.pw); got != tt.want || err != nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", tt.pw, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if _, err := VerifyPassword(bad, "x"); err == nil {
			t.Errorf("VerifyPassword accepted the hash %q", bad)
		}
	}
}

func TestSetAndCheckPassword(t *testing.T) {
	s, st, _ := newTestService(t)
	ctx := context.Background()
	if err := s.CheckPassword(ctx, "anything at all"); !herald.IsCode(err, herald.EUNAUTHORIZED) {
		t.Errorf("with no password set: %v, want unauthorized", err)
	}
	if has, _ := s.HasPassword(ctx); has {
		t.Error("HasPassword before one is set")
	}
	for _, weak := range []string{"short", " padded password ", strings.Repeat("x", MaxPasswordLen+1)} {
		if err := s.SetPassword(ctx, weak); !herald.IsCode(err, herald.EINVALID) {
			t.Errorf("SetPassword(%q) = %v, want invalid", weak, err)
		}
	}
	if err := s.SetPassword(ctx, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(st.settings[PasswordSetting], "horse") {
		t.Error("the password is stored in clear")
	}
	if err := s.CheckPassword(ctx, "correct horse battery"); err != nil {
		t.Errorf("the right password: %v", err)
	}
	if err := s.CheckPassword(ctx, "Correct horse battery"); !herald.IsCode(err, herald.EUNAUTHORIZED) {
		t.Errorf("a wrong password: %v", err)
	}
}

func TestSessions(t *testing.T) {
	s, st, now := newTestService(t)
	ctx := context.Background()
	raw, sess, err := s.StartSession(ctx, "password")
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 40 || sess.ExpiresAt != now.Add(DefaultSessionTTL) {
		t.Errorf("session %q expires %v", raw, sess.ExpiresAt)
	}
	for k := range st.sessions {
		if strings.Contains(k, raw) {
			t.Error("the session id is stored in clear")
		}
	}
	if _, err := s.Session(ctx, raw); err != nil {
		t.Errorf("live session: %v", err)
	}
	if _, err := s.Session(ctx, raw+"x"); !herald.IsCode(err, herald.EUNAUTHORIZED) {
		t.Errorf("forged session: %v", err)
	}
	tok := s.CSRFToken(raw)
	other, _, _ := s.StartSession(ctx, "token")
	if !s.CheckCSRF(raw, tok) || s.CheckCSRF(other, tok) || s.CheckCSRF(raw, "") || s.CheckCSRF("", tok) {
		t.Error("CSRF tokens are not tied to their session")
	}
	*now = now.Add(DefaultSessionTTL)
	if _, err := s.Session(ctx, raw); !herald.IsCode(err, herald.EUNAUTHORIZED) {
		t.Errorf("expired session: %v", err)
	}
	// The next login sweeps expired sessions.
	if _, _, err := s.StartSession(ctx, "password"); err != nil {
		t.Fatal(err)
	}
	if len(st.sessions) != 1 {
		t.Errorf("%d sessions kept, want the new one only", len(st.sessions))
	}
	if err := s.EndSession(ctx, other); err != nil {
		t.Fatal(err)
	}
}

func TestSealAndOpen(t *testing.T) {
	s, _, now := newTestService(t)
	sealed := s.Seal("form", []byte(`{"a":1}`), time.Minute)
	got, err := s.Open("form", sealed)
	if err != nil || string(got) != `{"a":1}` {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for _, bad := range []string{"", "x", sealed + "A", "A" + sealed, strings.Replace(sealed, ".", "", 1)} {
		if _, err := s.Open("form", bad); !herald.IsCode(err, herald.EINVALID) {
			t.Errorf("Open(%q) = %v, want invalid", bad, err)
		}
	}
	if _, err := s.Open("other", sealed); !herald.IsCode(err, herald.EINVALID) {
		t.Errorf("another purpose: %v", err)
	}
	*now = now.Add(2 * time.Minute)
	if _, err := s.Open("form", sealed); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("expired: %v", err)
	}
}
