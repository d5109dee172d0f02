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
func (o *outboxCopies) ForgetRecipients(ctx context.Context, addrs []string) (int, error) {
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
type addressMatcher struct {
	addrs   [][]byte // lower case, none empty, no duplicates
	longest int
	window  []byte // the unresolved tail of what was read, then the new chunk
}

// newAddressMatcher returns a matcher for addrs, or nil when there is no
// address to look for (empty ones are ignored).
func newAddressMatcher(addrs ...string) *addressMatcher {
	m := &addressMatcher{}
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		a = strings.ToLower(a)
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		m.addrs = append(m.addrs, []byte(a))
		m.longest = max(m.longest, len(a))
	}
	if len(m.addrs) == 0 {
		return nil
	}
	return m
}

// in reports whether r holds one of the addresses, reading it in chunks of
// buf's size and keeping only the longest address's length plus 2 bytes
// from one chunk to the next.
func (m *addressMatcher) in(r io.Reader, buf []byte) (bool, error) {
	m.window = m.window[:0]
	var before byte // the byte before window[0]; 0 at the start of r
	for {
		k, err := r.Read(buf)
		for _, c := range buf[:k] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			m.window = append(m.window, c)
		}
		eof := err == io.EOF
		if err != nil && !eof {
			return false, err
		}
		w := m.window
		for _, addr := range m.addrs {
			if holds(w, addr, before, eof) {
				return true, nil
			}
		}
		if eof {
			return false, nil
		}
		// Keep what an occurrence not yet decided, and the byte before it,
		// may need: an occurrence left undecided starts within the last
		// len(addr)+1 bytes, and one decided already is decided again the
		// same way.
		if keep := m.longest + 2; len(w) > keep {
			before = w[len(w)-keep-1]
			m.window = append(m.window[:0], w[len(w)-keep:]...)
		}
	}
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
