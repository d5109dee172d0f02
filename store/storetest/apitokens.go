package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"herald"
	"herald/apitokens"
)

// RunAPITokens runs the contract of apitokens.Store. open must return a
// new, migrated, empty store for each call.
func RunAPITokens(t *testing.T, open func(t *testing.T) apitokens.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s apitokens.Store)
	}{
		{"CreateFind", testAPITokenCreateFind},
		{"Conflicts", testAPITokenConflicts},
		{"Revoke", testAPITokenRevoke},
		{"Touch", testAPITokenTouch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

func newAPIToken(t *testing.T, s apitokens.Store, name string, scope apitokens.Scope) *apitokens.Token {
	t.Helper()
	tok := &apitokens.Token{Name: name, Hash: apitokens.Hash("secret-" + name), Scope: scope, CreatedAt: at(0)}
	if err := s.CreateAPIToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateAPIToken(%s): %v", name, err)
	}
	if tok.ID == 0 {
		t.Fatalf("CreateAPIToken(%s) set no ID", name)
	}
	return tok
}

// testAPITokenCreateFind: a token is found by its hash with every field,
// times in UTC, and listed in creation order.
func testAPITokenCreateFind(t *testing.T, s apitokens.Store) {
	ctx := t.Context()
	w := newAPIToken(t, s, "deploy", apitokens.ScopeWrite)
	r := newAPIToken(t, s, "dashboard", apitokens.ScopeRead)

	got, err := s.FindAPITokenByHash(ctx, apitokens.Hash("secret-dashboard"))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID || got.Name != "dashboard" || got.Scope != apitokens.ScopeRead || !bytes.Equal(got.Hash, r.Hash) {
		t.Errorf("found %+v, want %+v", got, r)
	}
	if !got.CreatedAt.Equal(at(0)) || got.CreatedAt.Location() != time.UTC || !got.LastUsedAt.IsZero() || got.Revoked() {
		t.Errorf("times: created %v, last used %v, revoked %v", got.CreatedAt, got.LastUsedAt, got.RevokedAt)
	}
	if _, err := s.FindAPITokenByHash(ctx, apitokens.Hash("nope")); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("unknown hash: err = %v, want ENOTFOUND", err)
	}
	list, err := s.FindAPITokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tok := range list {
		names = append(names, tok.Name)
	}
	if !slices.Equal(names, []string{"deploy", "dashboard"}) || list[0].ID != w.ID {
		t.Errorf("FindAPITokens = %v", names)
	}
}

// testAPITokenConflicts: names and hashes are unique.
func testAPITokenConflicts(t *testing.T, s apitokens.Store) {
	ctx := t.Context()
	first := newAPIToken(t, s, "deploy", apitokens.ScopeWrite)
	sameName := &apitokens.Token{Name: "deploy", Hash: apitokens.Hash("other"), Scope: apitokens.ScopeRead, CreatedAt: at(0)}
	if err := s.CreateAPIToken(ctx, sameName); !herald.IsCode(err, herald.ECONFLICT) {
		t.Errorf("same name: err = %v, want ECONFLICT", err)
	}
	sameHash := &apitokens.Token{Name: "other", Hash: first.Hash, Scope: apitokens.ScopeRead, CreatedAt: at(0)}
	if err := s.CreateAPIToken(ctx, sameHash); !herald.IsCode(err, herald.ECONFLICT) {
		t.Errorf("same hash: err = %v, want ECONFLICT", err)
	}
}

// testAPITokenRevoke: revoking sets the time once; a second revoke keeps
// the first time; an unknown name is ENOTFOUND.
func testAPITokenRevoke(t *testing.T, s apitokens.Store) {
	ctx := t.Context()
	newAPIToken(t, s, "deploy", apitokens.ScopeWrite)
	got, err := s.RevokeAPIToken(ctx, "deploy", at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !got.RevokedAt.Equal(at(time.Hour)) {
		t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, at(time.Hour))
	}
	got, err = s.RevokeAPIToken(ctx, "deploy", at(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !got.RevokedAt.Equal(at(time.Hour)) {
		t.Errorf("second revoke: RevokedAt = %v, want the first %v", got.RevokedAt, at(time.Hour))
	}
	found, err := s.FindAPITokenByHash(ctx, apitokens.Hash("secret-deploy"))
	if err != nil || !found.Revoked() {
		t.Errorf("after revoke: %+v, %v", found, err)
	}
	byID, err := s.FindAPITokenByID(ctx, found.ID)
	if err != nil || byID.Name != "deploy" || !byID.RevokedAt.Equal(at(time.Hour)) {
		t.Errorf("FindAPITokenByID(%d) = %+v, %v; want the revoked token deploy", found.ID, byID, err)
	}
	if _, err := s.FindAPITokenByID(ctx, found.ID+1000); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("FindAPITokenByID of an unknown id: err = %v, want ENOTFOUND", err)
	}
	if _, err := s.RevokeAPIToken(ctx, "nope", at(0)); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("unknown name: err = %v, want ENOTFOUND", err)
	}
}

// testAPITokenTouch: TouchAPIToken records the last use.
func testAPITokenTouch(t *testing.T, s apitokens.Store) {
	ctx := t.Context()
	tok := newAPIToken(t, s, "deploy", apitokens.ScopeWrite)
	if err := s.TouchAPIToken(ctx, tok.ID, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindAPITokenByHash(ctx, tok.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastUsedAt.Equal(at(time.Minute)) {
		t.Errorf("LastUsedAt = %v, want %v", got.LastUsedAt, at(time.Minute))
	}
	if err := s.TouchAPIToken(ctx, tok.ID+100, at(0)); !herald.IsCode(err, herald.ENOTFOUND) {
		t.Errorf("unknown id: err = %v, want ENOTFOUND", err)
	}
}
