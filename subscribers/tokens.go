package subscribers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"time"

	"herald"
)

// Two kinds of token reach readers.
//
// Stored tokens (confirmation) are 256 random bits; the store keeps only their
// SHA-256, with a purpose, an expiry and the time they were used, so they are
// single-use and a leaked database cannot be turned into working links.
//
// Signed tokens (unsubscribe, preferences) are in every email, so minting one
// must cost no write: they carry the subscriber id, a purpose and an expiry,
// sealed with an HMAC under a key kept in the store. Nothing about them is
// stored; rotating the key revokes them all.

const (
	tokenBytes     = 32
	signedVersion  = 1
	signedMACBytes = 16
)

// Purposes of signed tokens. They share no value with stored ones.
const (
	signedUnsubscribe byte = 'u'
	signedPreferences byte = 'p'
)

// newStoredToken returns a fresh random token and its hash.
func newStoredToken() (raw string, hash []byte, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	raw = base64.RawURLEncoding.EncodeToString(b)
	return raw, hashToken(raw), nil
}

// hashToken is what the store keeps of a stored token.
func hashToken(raw string) []byte {
	h := sha256.Sum256([]byte(raw))
	return h[:]
}

// wellFormedStored reports whether raw could be a stored token at all, so
// garbage never reaches the database.
func wellFormedStored(raw string) bool {
	if len(raw) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(raw)
	return err == nil
}

// signer mints and checks signed tokens, and keys the suppression list's
// address hashes.
type signer struct {
	key []byte
	// keyed is HMAC-SHA256 with key already absorbed (newSigner), cloned
	// for each MAC: every digest carries two tokens, and keying a fresh
	// HMAC costs two hash blocks and several allocations each time. Only
	// cloned, never written, so it is safe for concurrent use.
	keyed hash.Cloner
}

func newSigner(key []byte) signer {
	s := signer{key: key}
	m := hmac.New(sha256.New, key)
	// Reset keeps the hash states after the padded keys, so that each
	// clone's Sum restores the outer one instead of hashing its pad again.
	m.Reset()
	s.keyed, _ = m.(hash.Cloner)
	return s
}

func (s signer) mac(payload []byte) []byte { return s.sum(payload)[:signedMACBytes] }

// sum returns the whole HMAC-SHA256 of payload.
func (s signer) sum(payload []byte) []byte {
	var m hash.Hash
	if s.keyed != nil {
		if c, err := s.keyed.Clone(); err == nil {
			m = c
		}
	}
	if m == nil {
		m = hmac.New(sha256.New, s.key)
	}
	m.Write(payload)
	return m.Sum(nil)
}

// sign returns a token for (purpose, id) valid until expires.
func (s signer) sign(purpose byte, id int64, expires time.Time) string {
	buf := make([]byte, 0, 2+2*binary.MaxVarintLen64+signedMACBytes)
	buf = append(buf, signedVersion, purpose)
	buf = binary.AppendUvarint(buf, uint64(id))
	buf = binary.AppendUvarint(buf, uint64(expires.Unix()))
	buf = append(buf, s.mac(buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// verify returns the subscriber id in a token made by sign for purpose:
// ENOTFOUND for anything malformed or forged, EGONE when it has expired.
func (s signer) verify(token string, purpose byte, now time.Time) (int64, error) {
	notValid := herald.Errorf(herald.ENOTFOUND, "This link is not valid. Please use the link from your most recent email.")
	if len(token) > 64 || !isBase64URL(token) {
		return 0, notValid
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 2+2+signedMACBytes || b[0] != signedVersion || b[1] != purpose {
		return 0, notValid
	}
	body, mac := b[:len(b)-signedMACBytes], b[len(b)-signedMACBytes:]
	if !hmac.Equal(mac, s.mac(body)) {
		return 0, notValid
	}
	rest := body[2:]
	id, n := binary.Uvarint(rest)
	if n <= 0 || id == 0 || id > 1<<62 {
		return 0, notValid
	}
	exp, m := binary.Uvarint(rest[n:])
	if m <= 0 || n+m != len(rest) || exp > 1<<62 {
		return 0, notValid
	}
	if now.Unix() > int64(exp) {
		return 0, herald.Errorf(herald.EGONE, "This link has expired. Please use the link from your most recent email.")
	}
	return int64(id), nil
}

// isBase64URL reports whether s holds only the unpadded base64url
// alphabet. The decoder skips CR and LF, so without this check a token with
// line breaks in it would pass for the one without: one token, one
// spelling.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// newKey makes a token signing key.
func newKey() ([]byte, error) {
	k := make([]byte, 32)
	_, err := rand.Read(k)
	return k, err
}
