package apitokens

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"herald"
)

// memStore is an in-memory Store for the service's unit tests.
type memStore struct {
	mu      sync.Mutex
	tokens  []*Token
	touches int
}

func (m *memStore) CreateAPIToken(_ context.Context, t *Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.tokens {
		if o.Name == t.Name || string(o.Hash) == string(t.Hash) {
			return herald.Errorf(herald.ECONFLICT, "exists")
		}
	}
	t.ID = int64(len(m.tokens) + 1)
	c := *t
	m.tokens = append(m.tokens, &c)
	return nil
}

func (m *memStore) FindAPITokenByHash(_ context.Context, hash []byte) (*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tokens {
		if string(t.Hash) == string(hash) {
			c := *t
			return &c, nil
		}
	}
	return nil, herald.Errorf(herald.ENOTFOUND, "no")
}

func (m *memStore) FindAPITokenByID(_ context.Context, id int64) (*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tokens {
		if t.ID == id {
			c := *t
			return &c, nil
		}
	}
	return nil, herald.Errorf(herald.ENOTFOUND, "no")
}

func (m *memStore) FindAPITokens(context.Context) ([]*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens, nil
}

func (m *memStore) RevokeAPIToken(_ context.Context, name string, at time.Time) (*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tokens {
		if t.Name == name {
			if t.RevokedAt.IsZero() {
				t.RevokedAt = at
			}
			return t, nil
		}
	}
	return nil, herald.Errorf(herald.ENOTFOUND, "no")
}

func (m *memStore) TouchAPIToken(_ context.Context, id int64, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.touches++
	m.tokens[id-1].LastUsedAt = at
	return nil
}

func TestCreateAuthenticateRevoke(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	st := &memStore{}
	svc := NewService(st, Options{Now: func() time.Time { return now }})

	tok, raw, err := svc.Create(ctx, "deploy", ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, Prefix) || len(raw) != len(Prefix)+43 {
		t.Errorf("token %q: want %s and 43 base64url characters", raw, Prefix)
	}
	if string(tok.Hash) != string(Hash(raw)) || strings.Contains(string(st.tokens[0].Hash), raw) {
		t.Error("the store holds something other than the token's hash")
	}
	got, err := svc.Authenticate(ctx, raw)
	if err != nil || got.Scope != ScopeRead || got.Name != "deploy" {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	for _, bad := range []string{"", raw + "x", raw[:len(raw)-1], strings.Repeat("a", 600)} {
		if _, err := svc.Authenticate(ctx, bad); !herald.IsCode(err, herald.EUNAUTHORIZED) {
			t.Errorf("Authenticate(%.20q) err = %v, want EUNAUTHORIZED", bad, err)
		}
	}
	if _, _, err := svc.Create(ctx, "deploy", ScopeWrite); !herald.IsCode(err, herald.ECONFLICT) {
		t.Errorf("same name: err = %v, want ECONFLICT", err)
	}
	if err := svc.Live(ctx, tok.ID); err != nil {
		t.Errorf("Live before revoking: %v", err)
	}
	if _, err := svc.Revoke(ctx, "deploy"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Live(ctx, tok.ID); !herald.IsCode(err, herald.EUNAUTHORIZED) {
		t.Errorf("Live after revoking: err = %v, want EUNAUTHORIZED", err)
	}
	if err := svc.Live(ctx, tok.ID+1); !herald.IsCode(err, herald.EUNAUTHORIZED) {
		t.Errorf("Live of an unknown id: err = %v, want EUNAUTHORIZED", err)
	}
	if _, err := svc.Authenticate(ctx, raw); !herald.IsCode(err, herald.EUNAUTHORIZED) || !strings.Contains(herald.ErrorMessage(err), "revoked") {
		t.Errorf("revoked: err = %v", err)
	}
	if _, err := svc.Revoke(ctx, "nope"); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("unknown: err = %v", err)
	}
}

func TestCreateChecks(t *testing.T) {
	svc := NewService(&memStore{}, Options{})
	tests := []struct {
		name  string
		scope Scope
		want  string
	}{
		{"", ScopeWrite, "name"},
		{" padded", ScopeWrite, "name"},
		{"tab\there", ScopeWrite, "name"},
		{strings.Repeat("x", MaxNameLen+1), ScopeWrite, "name"},
		{"ok", "admin", "scope"},
	}
	for _, tt := range tests {
		_, _, err := svc.Create(context.Background(), tt.name, tt.scope)
		if !herald.IsCode(err, herald.EINVALID) || !strings.HasPrefix(herald.ErrorMessage(err), tt.want) {
			t.Errorf("Create(%q, %q) err = %v, want EINVALID on %s", tt.name, tt.scope, err, tt.want)
		}
	}
}

// TestTouchThrottled: many requests within a minute write LastUsedAt once;
// the next minute writes it again.
func TestTouchThrottled(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st := &memStore{}
	svc := NewService(st, Options{Now: clock})
	_, raw, err := svc.Create(ctx, "deploy", ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := svc.Authenticate(ctx, raw); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st.touches != 1 {
		t.Errorf("touches after 50 requests = %d, want 1", st.touches)
	}
	mu.Lock()
	now = now.Add(59 * time.Second)
	mu.Unlock()
	_, _ = svc.Authenticate(ctx, raw)
	if st.touches != 1 {
		t.Errorf("touches 59 s later = %d, want 1", st.touches)
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	_, _ = svc.Authenticate(ctx, raw)
	if st.touches != 2 || !st.tokens[0].LastUsedAt.Equal(now) {
		t.Errorf("touches a minute later = %d (last used %v), want 2", st.touches, st.tokens[0].LastUsedAt)
	}
}
