package subscribers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"herald"
)

// The suppression list holds addresses Herald must never write to again,
// and never the addresses themselves: each entry is the HMAC-SHA256 of the
// normalised address under a key kept in the store's secrets
// (suppressionKeyName), so that a reader who was erased leaves no address
// behind, yet an import or a signup that brings the address back is
// recognised. Without the key, the list reveals nothing; with it, one can
// only test a known address, which is the point.

// suppressionKeyName is the secret the suppression list is keyed with. It
// is not the token key: rotating the token key (to revoke every link) must
// not empty the suppression list.
const suppressionKeyName = "suppression_key"

// Suppression reasons Herald writes itself. An operator may give any other
// short reason through the admin API.
const (
	ReasonErased = "erased" // the reader's data were erased (GDPR)
	ReasonManual = "manual" // added by an operator without a reason
)

// EventSuppressed and EventUnsuppressed record, in the activity log of a
// subscriber whose address is added to or removed from the suppression
// list, that it happened (detail: the reason).
const (
	EventSuppressed   = "suppressed"
	EventUnsuppressed = "unsuppressed"
)

// maxReasonLength caps a suppression reason, in bytes.
const maxReasonLength = 200

// Suppression is one entry of the suppression list.
type Suppression struct {
	Hash      []byte // HMAC-SHA256 of the normalised address
	Reason    string
	CreatedAt time.Time
}

// addressHash is the suppression list's key for a normalised address.
func (s *Service) addressHash(email string) []byte {
	return s.suppressMAC.sum([]byte(strings.ToLower(email)))
}

// suppressedIn reports, inside a write transaction, whether email (already
// normalised) is on the suppression list. A store without the privacy
// operations has no list: nothing is suppressed there. A Tx wrapped by a
// decorator that hides PrivacyTx (a dry run) is answered from the committed
// list instead.
func (s *Service) suppressedIn(ctx context.Context, tx Tx, email string) (bool, error) {
	if s.privacy == nil {
		return false, nil
	}
	if ptx, ok := tx.(PrivacyTx); ok {
		return ptx.Suppressed(s.addressHash(email))
	}
	return s.suppressed(ctx, email)
}

// normalizeReason checks an operator's reason; empty becomes ReasonManual.
func normalizeReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return ReasonManual, nil
	}
	if len(reason) > maxReasonLength {
		return "", herald.Errorf(herald.EINVALID, "reason: at most %d characters.", maxReasonLength)
	}
	for _, r := range reason {
		if r < 0x20 || r == 0x7f {
			return "", herald.Errorf(herald.EINVALID, "reason: no control characters such as line breaks.")
		}
	}
	return reason, nil
}

// Suppress puts an address on the suppression list: no signup, import or
// email reaches it afterwards (messages already queued are cancelled when
// they are claimed). It reports whether the address was added; one already
// on the list keeps its first entry, which is returned. A subscriber with
// that address keeps their row and gets an EventSuppressed in their
// activity log. EINVALID for an address NormalizeAddress refuses or a bad
// reason.
func (s *Service) Suppress(ctx context.Context, email, reason string) (Suppression, bool, error) {
	addr, err := NormalizeAddress(email)
	if err != nil {
		return Suppression{}, false, err
	}
	if reason, err = normalizeReason(reason); err != nil {
		return Suppression{}, false, err
	}
	now := s.now()
	var (
		entry Suppression
		added bool
		subID int64
	)
	err = s.updatePrivacy(ctx, func(tx PrivacyTx) error {
		entry = Suppression{Hash: s.addressHash(addr), Reason: reason, CreatedAt: now}
		var err error
		if added, err = tx.AddSuppression(entry); err != nil {
			return err
		}
		if !added {
			got, err := tx.SuppressionByHash(entry.Hash)
			if err != nil {
				return err
			}
			entry = *got
			return nil
		}
		sub, err := tx.SubscriberByEmail(addr)
		if herald.IsCode(err, herald.ENOTFOUND) {
			return nil
		} else if err != nil {
			return err
		}
		subID = sub.ID
		return tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventSuppressed, Detail: clip(reason, maxReasonLength)})
	})
	if err != nil {
		return Suppression{}, false, fmt.Errorf("suppress: %w", err)
	}
	if added {
		s.opts.Logger.InfoContext(ctx, "address suppressed", "subscriber_id", subID, "reason", reason)
	}
	return entry, added, nil
}

// Unsuppress takes an address off the suppression list: ENOTFOUND when it
// is not on it, EINVALID for an address NormalizeAddress refuses. The
// address may sign up (and be imported) again afterwards; a subscriber
// with that address gets an EventUnsuppressed.
func (s *Service) Unsuppress(ctx context.Context, email string) error {
	addr, err := NormalizeAddress(email)
	if err != nil {
		return err
	}
	return s.unsuppress(ctx, s.addressHash(addr), addr)
}

// UnsuppressHash takes the entry with that hash (as Suppressions lists it)
// off the suppression list, for an operator who knows the entry but not the
// address: ENOTFOUND when there is none.
func (s *Service) UnsuppressHash(ctx context.Context, hash []byte) error {
	if len(hash) != sha256.Size {
		return herald.Errorf(herald.EINVALID, "hash: must be %d bytes (%d hexadecimal digits).", sha256.Size, 2*sha256.Size)
	}
	return s.unsuppress(ctx, hash, "")
}

func (s *Service) unsuppress(ctx context.Context, hash []byte, addr string) error {
	now := s.now()
	var subID int64
	err := s.updatePrivacy(ctx, func(tx PrivacyTx) error {
		if err := tx.DeleteSuppression(hash); err != nil {
			return err
		}
		if addr == "" {
			return nil
		}
		sub, err := tx.SubscriberByEmail(addr)
		if herald.IsCode(err, herald.ENOTFOUND) {
			return nil
		} else if err != nil {
			return err
		}
		subID = sub.ID
		return tx.AddEvent(Event{SubscriberID: sub.ID, At: now, Kind: EventUnsuppressed})
	})
	if herald.IsCode(err, herald.ENOTFOUND) {
		return herald.Errorf(herald.ENOTFOUND, "This address is not on the suppression list.")
	} else if err != nil {
		return fmt.Errorf("unsuppress: %w", err)
	}
	s.opts.Logger.InfoContext(ctx, "address unsuppressed", "subscriber_id", subID)
	return nil
}

// IsSuppressed reports whether an address is on the suppression list. An
// address NormalizeAddress refuses is not on it (it could never be).
func (s *Service) IsSuppressed(ctx context.Context, email string) (bool, error) {
	if s.privacy == nil {
		return false, nil
	}
	addr, err := NormalizeAddress(email)
	if err != nil {
		return false, nil
	}
	ok, err := s.suppressed(ctx, addr)
	if err != nil {
		return false, fmt.Errorf("is suppressed: %w", err)
	}
	return ok, nil
}

// suppressed reports whether email (already normalised) is on the
// suppression list, as last committed, read outside any write transaction.
// A store without the privacy operations has no list.
func (s *Service) suppressed(ctx context.Context, email string) (bool, error) {
	if s.privacy == nil {
		return false, nil
	}
	_, err := s.privacy.FindSuppression(ctx, s.addressHash(email))
	switch {
	case err == nil:
		return true, nil
	case herald.IsCode(err, herald.ENOTFOUND):
		return false, nil
	}
	return false, err
}

// suppressedHashesFinder is a store that checks many suppression hashes
// in one query (both of Herald's stores are).
type suppressedHashesFinder interface {
	// SuppressedHashes returns those of hashes that are on the list.
	SuppressedHashes(ctx context.Context, hashes [][]byte) ([][]byte, error)
}

// SuppressedAmong reports, for each of emails, whether the address is on
// the suppression list, as IsSuppressed does one at a time: with a single
// query when the store can, so that the delivery engine checks a claimed
// batch at once. An address NormalizeAddress refuses is not suppressed.
func (s *Service) SuppressedAmong(ctx context.Context, emails []string) ([]bool, error) {
	out := make([]bool, len(emails))
	if s.privacy == nil || len(emails) == 0 {
		return out, nil
	}
	finder, ok := s.privacy.(suppressedHashesFinder)
	if !ok {
		for i, e := range emails {
			var err error
			if out[i], err = s.IsSuppressed(ctx, e); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	hashes := make([][]byte, 0, len(emails))
	idx := make(map[string][]int, len(emails)) // hash -> positions in emails
	for i, e := range emails {
		addr, err := NormalizeAddress(e)
		if err != nil {
			continue
		}
		h := s.addressHash(addr)
		if _, seen := idx[string(h)]; !seen {
			hashes = append(hashes, h)
		}
		idx[string(h)] = append(idx[string(h)], i)
	}
	found, err := finder.SuppressedHashes(ctx, hashes)
	if err != nil {
		return nil, fmt.Errorf("suppressed among: %w", err)
	}
	for _, h := range found {
		for _, i := range idx[string(h)] {
			out[i] = true
		}
	}
	return out, nil
}

// Suppressions returns up to limit entries of the suppression list whose
// hashes sort after afterHash (nil: from the start), in hash order.
func (s *Service) Suppressions(ctx context.Context, afterHash []byte, limit int) ([]Suppression, error) {
	if s.privacy == nil {
		return nil, noPrivacy()
	}
	return s.privacy.FindSuppressions(ctx, afterHash, limit)
}
