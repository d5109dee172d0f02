package bounces

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"strings"
)

// VERPPrefix starts the local part of every VERP return path Herald writes:
// bounces+<token>@<bounce domain>.
const VERPPrefix = "bounces+"

const verpMACBytes = 8

// verpEncoding is lower-case base32 without padding: case-insensitive in
// practice (some mail systems lower-case local parts) and safe in an
// address.
var verpEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// verpMAC seals a VERP payload under key.
func verpMAC(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("herald-verp-1\x00"))
	m.Write(payload)
	return m.Sum(nil)[:verpMACBytes]
}

// VERPAddress returns the per-message return path (envelope sender) for the
// outbox message outboxID: bounces+<token>@domain, where the token carries
// the id sealed with an HMAC under key, so that a bounce sent to it names
// the message, and no one without the key can make one that names another.
// The token is 16 to 24 characters.
func VERPAddress(outboxID int64, key []byte, domain string) string {
	payload := binary.AppendUvarint(nil, uint64(outboxID))
	token := verpEncoding.EncodeToString(append(payload, verpMAC(key, payload)...))
	return VERPPrefix + token + "@" + domain
}

// DecodeVERP returns the outbox message id a VERP return path made by
// VERPAddress with key names. ok is false for anything else: another
// address, a damaged or forged token, another key.
func DecodeVERP(addr string, key []byte) (outboxID int64, ok bool) {
	local, _, found := strings.Cut(strings.TrimSpace(addr), "@")
	if !found || len(local) > 64 {
		return 0, false
	}
	local = strings.ToLower(local)
	token, found := strings.CutPrefix(local, VERPPrefix)
	if !found {
		return 0, false
	}
	b, err := verpEncoding.DecodeString(token)
	if err != nil || len(b) <= verpMACBytes {
		return 0, false
	}
	payload, mac := b[:len(b)-verpMACBytes], b[len(b)-verpMACBytes:]
	if !hmac.Equal(mac, verpMAC(key, payload)) {
		return 0, false
	}
	id, n := binary.Uvarint(payload)
	if n != len(payload) || id == 0 || id > 1<<62 {
		return 0, false
	}
	return int64(id), true
}
