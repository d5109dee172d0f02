package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"herald"
	"herald/adminauth"
)

// RunAdminAuth runs the contract of adminauth.Store: sessions by hash with
// their expiry, and settings. open must return a fresh, migrated store.
func RunAdminAuth(t *testing.T, open func(t *testing.T) adminauth.Store) {
	t.Run("Sessions", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		at := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
		live := &adminauth.Session{IDHash: bytes.Repeat([]byte{1}, 32), Via: "password", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
		old := &adminauth.Session{IDHash: bytes.Repeat([]byte{2}, 32), Via: "token:3", CreatedAt: at.Add(-2 * time.Hour), ExpiresAt: at}
		for _, sess := range []*adminauth.Session{live, old} {
			if err := s.CreateAdminSession(ctx, sess); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateAdminSession(ctx, live); !herald.IsCode(err, herald.ECONFLICT) {
			t.Errorf("duplicate session: %v, want conflict", err)
		}
		got, err := s.FindAdminSession(ctx, live.IDHash)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.IDHash, live.IDHash) || got.Via != "password" || !got.CreatedAt.Equal(at) || !got.ExpiresAt.Equal(at.Add(time.Hour)) {
			t.Errorf("found %+v, want %+v", got, live)
		}
		if _, err := s.FindAdminSession(ctx, []byte("nope")); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("unknown session: %v, want not found", err)
		}
		n, err := s.DeleteExpiredAdminSessions(ctx, at)
		if err != nil || n != 1 {
			t.Errorf("DeleteExpiredAdminSessions = %d, %v; want 1", n, err)
		}
		if _, err := s.FindAdminSession(ctx, old.IDHash); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("expired session kept: %v", err)
		}
		if err := s.DeleteAdminSession(ctx, live.IDHash); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteAdminSession(ctx, live.IDHash); err != nil {
			t.Errorf("deleting a deleted session: %v", err)
		}
		if _, err := s.FindAdminSession(ctx, live.IDHash); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("deleted session found: %v", err)
		}
	})
	t.Run("Settings", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		if _, err := s.Setting(ctx, "admin_password"); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("unset setting: %v, want not found", err)
		}
		at := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
		for _, v := range []string{"first", "second"} {
			if err := s.SetSetting(ctx, "admin_password", v, at); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Setting(ctx, "admin_password"); err != nil || got != v {
				t.Errorf("Setting = %q, %v; want %q", got, err, v)
			}
		}
	})
}
