package subscribers

import (
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"

	"herald"
)

// FuzzSignedToken feeds arbitrary strings, as a URL path segment brings
// them, to the unsubscribe and preference token check: it never panics,
// refuses with ENOTFOUND or EGONE only, and whatever it accepts is exactly
// a token sign would have made for that purpose, id and expiry, so no
// other spelling of a token (padding, trailing bytes, a longer varint)
// passes for it.
func FuzzSignedToken(f *testing.F) {
	s := signer{key: []byte("a fuzzing key of thirty-two bytes")}
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	f.Add(s.sign(signedUnsubscribe, 7, now.Add(time.Hour)))
	f.Add(s.sign(signedPreferences, 1<<40, now.Add(-time.Hour)))
	f.Add(s.sign(signedPreferences, 1, now))
	f.Add(s.sign(signedUnsubscribe, 7, now.Add(time.Hour)) + "=")
	f.Add("")
	f.Add("AQ")
	f.Add("AXUH_____________________w")
	f.Fuzz(func(t *testing.T, token string) {
		for _, purpose := range []byte{signedUnsubscribe, signedPreferences} {
			id, err := s.verify(token, purpose, now)
			if err != nil {
				if !herald.IsCode(err, herald.ENOTFOUND) && !herald.IsCode(err, herald.EGONE) {
					t.Fatalf("verify(%q): %v, want ENOTFOUND or EGONE", token, err)
				}
				continue
			}
			if id <= 0 {
				t.Fatalf("verify(%q) = id %d", token, id)
			}
			b, _ := base64.RawURLEncoding.DecodeString(token)
			_, n := binary.Uvarint(b[2:])
			exp, _ := binary.Uvarint(b[2+n:])
			if again := s.sign(purpose, id, time.Unix(int64(exp), 0)); again != token {
				t.Fatalf("verify accepted %q, which sign writes as %q", token, again)
			}
		}
	})
}
