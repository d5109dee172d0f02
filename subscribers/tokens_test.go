package subscribers

import (
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"herald"
)

// A signer keyed once and cloned for each MAC mints the tokens a freshly
// keyed HMAC does, also from many goroutines at once.
func TestSignerClonesKeyedHMAC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s, plain := newSigner(key), signer{key: key}
	if s.keyed == nil {
		t.Fatal("newSigner did not key an HMAC to clone")
	}
	expires := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for id := int64(g * 1000); id < int64(g*1000+500); id++ {
				if got, want := s.sign(signedUnsubscribe, id, expires), plain.sign(signedUnsubscribe, id, expires); got != want {
					errs <- fmt.Sprintf("token for %d: %s, want %s", id, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestSignedTokens(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	s := newSigner([]byte("0123456789abcdef0123456789abcdef"))
	other := newSigner([]byte("fedcba9876543210fedcba9876543210"))
	tok := s.sign(signedUnsubscribe, 42, now.Add(time.Hour))

	id, err := s.verify(tok, signedUnsubscribe, now)
	if err != nil || id != 42 {
		t.Fatalf("verify = %d, %v; want 42, nil", id, err)
	}

	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)-1] ^= 1
	idChanged := append([]byte(nil), raw...)
	idChanged[2] ^= 1

	tests := []struct {
		name, token string
		purpose     byte
		at          time.Time
		signer      signer
		code        string
	}{
		{"wrong purpose", tok, signedPreferences, now, s, herald.ENOTFOUND},
		{"other key", tok, signedUnsubscribe, now, other, herald.ENOTFOUND},
		{"tampered mac", base64.RawURLEncoding.EncodeToString(flipped), signedUnsubscribe, now, s, herald.ENOTFOUND},
		{"tampered id", base64.RawURLEncoding.EncodeToString(idChanged), signedUnsubscribe, now, s, herald.ENOTFOUND},
		{"truncated", tok[:10], signedUnsubscribe, now, s, herald.ENOTFOUND},
		{"not base64", "%%%", signedUnsubscribe, now, s, herald.ENOTFOUND},
		{"empty", "", signedUnsubscribe, now, s, herald.ENOTFOUND},
		{"expired", tok, signedUnsubscribe, now.Add(2 * time.Hour), s, herald.EGONE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.signer.verify(tt.token, tt.purpose, tt.at)
			if got := herald.ErrorCode(err); got != tt.code {
				t.Errorf("code = %q, want %q (err %v)", got, tt.code, err)
			}
		})
	}
}

func TestStoredTokens(t *testing.T) {
	raw, hash, err := newStoredToken()
	if err != nil {
		t.Fatal(err)
	}
	if !wellFormedStored(raw) {
		t.Errorf("fresh token %q is not well formed", raw)
	}
	if string(hashToken(raw)) != string(hash) {
		t.Error("hash of the raw token differs from the hash returned")
	}
	if string(hash) == raw || len(hash) != 32 {
		t.Errorf("hash must be a 32-byte digest, not the token")
	}
	raw2, _, _ := newStoredToken()
	if raw == raw2 {
		t.Error("two tokens are equal")
	}
	for _, bad := range []string{"", "short", raw + "x", raw[:len(raw)-1] + "*"} {
		if wellFormedStored(bad) {
			t.Errorf("wellFormedStored(%q) = true", bad)
		}
	}
}

// BenchmarkSign mints one unsubscribe token, as every digest does twice.
func BenchmarkSign(b *testing.B) {
	s := newSigner([]byte("0123456789abcdef0123456789abcdef"))
	expires := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := int64(0); b.Loop(); i++ {
		s.sign(signedUnsubscribe, i, expires)
	}
}
