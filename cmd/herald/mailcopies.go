package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// outboxCopies is the outbox transport's directory seen as the copies of
// sent mail that erasing a reader, or purging unconfirmed signups, must
// remove (subscribers.MailCopies).
type outboxCopies struct {
	dir string
}

// mailCopiesOf returns the kept copies of sent mail under the configured
// transport: the outbox directory, or nil when mail goes through a relay.
func mailCopiesOf(cfg *Config) *outboxCopies {
	if dir := outboxDirOf(cfg); dir != "" {
		return &outboxCopies{dir: dir}
	}
	return nil
}

// outboxReadDirBatch is how many directory entries ForgetRecipients reads
// at a time: the directory is streamed, never listed whole.
const outboxReadDirBatch = 256

// ForgetRecipients removes every .eml file of the directory that holds one
// of addrs (compared without regard to ASCII case, as a whole address:
// erasing bob@example.org leaves jimbob@example.org's mail alone), and
// returns how many it removed. It goes through the directory once for all
// of addrs, and reads each file through a small buffer, so neither the
// directory nor a file is ever held in memory whole. A missing directory
// holds nothing. A file it cannot read is left in place and reported in
// the error after the others are done; errors name files, whose names come
// from Message-IDs, never an address.
//
// With keptBefore set, a file last modified at or after it stays (mail
// written since to an address that came back).
func (o *outboxCopies) ForgetRecipients(ctx context.Context, addrs []string, keptBefore time.Time) (int, error) {
	m := newAddressMatcher(addrs...)
	if m == nil {
		return 0, nil
	}
	root, err := os.OpenRoot(o.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("open outbox: %w", err)
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return 0, fmt.Errorf("open outbox: %w", err)
	}
	defer d.Close()

	buf := make([]byte, 32<<10)
	removed := 0
	var errs []error
	for {
		if err := ctx.Err(); err != nil {
			return removed, errors.Join(append(errs, err)...)
		}
		entries, rerr := d.ReadDir(outboxReadDirBatch)
		for _, e := range entries {
			name := e.Name()
			// Only the transport's finished files: its temporary files are
			// renamed into .eml files, and anything else is not ours.
			if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".eml") {
				continue
			}
			found, err := fileHolds(root, name, m, buf)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			} else if err != nil {
				errs = append(errs, err)
				continue
			}
			if !found {
				continue
			}
			if !keptBefore.IsZero() {
				info, err := root.Stat(name)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				} else if err != nil {
					errs = append(errs, err)
					continue
				}
				if !info.ModTime().Before(keptBefore) {
					continue
				}
			}
			if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			removed++
		}
		if rerr == io.EOF {
			break
		} else if rerr != nil {
			errs = append(errs, fmt.Errorf("read outbox: %w", rerr))
			break
		}
	}
	return removed, errors.Join(errs...)
}

// fileHolds reports whether the file name under root holds one of the
// addresses m looks for, reading it through buf.
func fileHolds(root *os.Root, name string, m *addressMatcher, buf []byte) (bool, error) {
	f, err := root.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	found, err := m.in(f, buf)
	if err != nil {
		return false, fmt.Errorf("read outbox file %s: %w", name, err)
	}
	return found, nil
}

// addressMatcher finds any of a set of email addresses in a stream of
// bytes, ignoring ASCII case, as a whole address: not preceded by a
// character that could belong to a local part, nor followed by one that
// could extend its domain.
//
// It costs one pass over the stream's bytes however many addresses it
// looks for. An address in the form the store keeps (NormalizeAddress: one
// '@', a dot-atom local part, dot-separated LDH labels) can only be found
// as the maximal candidate around an '@' of the stream, never as a strict
// part of it:
//
//   - every byte of its local part is a localPartByte and the byte before
//     a match may not be one, so a match starts exactly where the run of
//     localPartBytes before the '@' starts;
//   - the domain continues (domainContinues) at each of its own bytes, and
//     may not continue after a match, so a match ends exactly where the
//     domain first stops continuing after the '@'.
//
// So the matcher looks at each '@' once, takes that one candidate, and
// looks it up in a set. An address of any other shape (the store does not
// hand one over, but the rule is the same for it) may be a strict part of
// the candidate: "x@a." is found in "x@a. ", whose domain stops at the
// dot; such addresses are searched for one by one, as a whole address.
type addressMatcher struct {
	set          map[string]struct{} // lower case, found through the '@' bytes
	maxLocal     int                 // the longest local part in set
	maxDomain    int                 // the longest domain in set
	others       [][]byte            // lower case, none empty, searched for one by one
	longestOther int
	window       []byte // the unresolved tail of what was read, then the new chunk
}

// newAddressMatcher returns a matcher for addrs, or nil when there is no
// address to look for (empty ones are ignored).
func newAddressMatcher(addrs ...string) *addressMatcher {
	m := &addressMatcher{set: make(map[string]struct{}, len(addrs))}
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		a = strings.ToLower(a)
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		if at, ok := maximalCandidateOnly(a); ok {
			m.set[a] = struct{}{}
			m.maxLocal = max(m.maxLocal, at)
			m.maxDomain = max(m.maxDomain, len(a)-at-1)
			continue
		}
		m.others = append(m.others, []byte(a))
		m.longestOther = max(m.longestOther, len(a))
	}
	if len(seen) == 0 {
		return nil
	}
	return m
}

// maximalCandidateOnly reports whether a, lower case, can only be found as
// the maximal candidate around its '@' (see addressMatcher), and where its
// '@' is: it has exactly one, its local part is all localPartBytes, and its
// domain is not empty and continues at each of its bytes (no '.' at its end
// or before another '.', nothing but letters, digits, '-', '.' and
// non-ASCII bytes).
func maximalCandidateOnly(a string) (at int, ok bool) {
	at = strings.IndexByte(a, '@')
	if at < 0 || strings.IndexByte(a[at+1:], '@') >= 0 || at == len(a)-1 {
		return 0, false
	}
	for i := 0; i < at; i++ {
		if !localPartByte(a[i]) {
			return 0, false
		}
	}
	for i := at + 1; i < len(a); i++ {
		if !domainContinues([]byte(a[i:])) {
			return 0, false
		}
	}
	return at, true
}

// in reports whether r holds one of the addresses, reading it in chunks of
// buf's size and keeping from one chunk to the next only the bytes that an
// '@' not yet decided needs (from its longest possible local part on) and,
// when some addresses are searched for one by one, the longest of those
// plus 2 bytes.
func (m *addressMatcher) in(r io.Reader, buf []byte) (bool, error) {
	m.window = m.window[:0]
	var before byte // the byte before window[0]; 0 at the start of r
	next := 0       // where in window the '@' bytes not yet looked at start
	for {
		k, err := r.Read(buf)
		m.window = appendLower(m.window, buf[:k])
		eof := err == io.EOF
		if err != nil && !eof {
			return false, err
		}
		w := m.window
		found, pending := m.atSigns(w, next, before, eof)
		if found {
			return true, nil
		}
		for _, addr := range m.others {
			if holds(w, addr, before, eof) {
				return true, nil
			}
		}
		if eof {
			return false, nil
		}
		// Keep the longest local part the first '@' not yet decided may
		// have (before is then the byte before it). For the others, keep
		// what an occurrence not yet decided, and the byte before it, may
		// need: it starts within the last len(addr)+1 bytes, and one
		// decided already is decided again the same way.
		cut := pending - m.maxLocal
		if len(m.others) > 0 {
			cut = min(cut, len(w)-m.longestOther-2)
		}
		if cut > 0 {
			before = w[cut-1]
			m.window = append(m.window[:0], w[cut:]...)
			pending -= cut
		}
		next = pending
	}
}

// atSigns reports whether w, preceded by the byte before (0 at the start
// of the stream), holds one of m.set as a whole address around an '@' at
// or after from. Unless eof, an '@' too close to w's end to tell where its
// domain ends is left for the next chunk: pending is where it is, or len(w).
// Each byte of w is looked at for at most one '@' going back and one going
// forward ('@' ends both a local part and a domain), and one lookup hashes
// those bytes: the cost is w's length, whatever the number of addresses.
func (m *addressMatcher) atSigns(w []byte, from int, before byte, eof bool) (found bool, pending int) {
	if len(m.set) == 0 {
		return false, len(w)
	}
	for p := from; ; p++ {
		i := bytes.IndexByte(w[p:], '@')
		if i < 0 {
			return false, len(w)
		}
		p += i
		// The local part: the whole run of localPartBytes before the '@'.
		// One longer than any in the set is not followed back further than
		// that: the byte before what was followed is then one of its own.
		// The window holds maxLocal bytes before p unless it starts the
		// stream, and before is the byte before the window.
		s := p
		for s > 0 && p-s < m.maxLocal && localPartByte(w[s-1]) {
			s--
		}
		prev := before
		if s > 0 {
			prev = w[s-1]
		}
		if localPartByte(prev) {
			continue
		}
		// The domain: up to where it first stops continuing, unless it
		// is longer than any in the set.
		e := p + 1
		for e-p-1 <= m.maxDomain {
			if !eof && e+2 > len(w) {
				return false, p // decided once the next chunk is in
			}
			if !domainContinues(w[e:]) {
				break
			}
			e++
		}
		if e-p-1 > m.maxDomain {
			continue
		}
		if _, ok := m.set[string(w[s:e])]; ok {
			return true, p
		}
	}
}

// appendLower appends b to w with ASCII letters in lower case.
func appendLower(w, b []byte) []byte {
	n := len(w)
	w = append(w, b...)
	for i, c := range w[n:] {
		if 'A' <= c && c <= 'Z' {
			w[n+i] = c + 'a' - 'A'
		}
	}
	return w
}

// holds reports whether w, preceded by the byte before (0 at the start of
// the stream), holds addr as a whole address. Unless eof, an occurrence
// too close to w's end to tell is left for the next chunk.
func holds(w, addr []byte, before byte, eof bool) bool {
	for i := 0; ; {
		j := indexFrom(w, addr, i)
		if j < 0 {
			return false
		}
		end := j + len(addr)
		if !eof && end+2 > len(w) {
			return false // decided once the next chunk is in
		}
		prev := before
		if j > 0 {
			prev = w[j-1]
		}
		if !localPartByte(prev) && !domainContinues(w[end:]) {
			return true
		}
		i = j + 1
	}
}

// indexFrom is the index of sep in s at or after from, or -1.
func indexFrom(s, sep []byte, from int) int {
	if from > len(s) {
		return -1
	}
	if j := bytes.Index(s[from:], sep); j >= 0 {
		return from + j
	}
	return -1
}

// localPartByte reports whether c may be part of an address's local part
// (atext or a dot), so that an address right after it is a longer one.
func localPartByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0
}

// domainContinues reports whether rest, what follows a found address,
// makes its domain a longer one: a letter, digit or hyphen, or a dot and
// then one of those. A dot that ends a sentence does not.
func domainContinues(rest []byte) bool {
	label := func(c byte) bool {
		return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c >= 0x80
	}
	if len(rest) == 0 {
		return false
	}
	if label(rest[0]) {
		return true
	}
	return rest[0] == '.' && len(rest) > 1 && label(rest[1])
}
