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
// sent mail that erasing a reader must remove (subscribers.MailCopies).
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

// outboxReadDirBatch is how many directory entries ForgetRecipient reads
// at a time: the directory is streamed, never listed whole.
const outboxReadDirBatch = 256

// ForgetRecipient removes every .eml file of the directory that holds addr
// (compared without regard to ASCII case, as a whole address: erasing
// bob@example.org leaves jimbob@example.org's mail alone), and returns how
// many it removed. It reads each file through a small buffer, so neither
// the directory nor a file is ever held in memory whole. A missing
// directory holds nothing. A file it cannot read is left in place and
// reported in the error after the others are done; errors name files,
// whose names come from Message-IDs, never the address.
func (o *outboxCopies) ForgetRecipient(ctx context.Context, addr string) (int, error) {
	if addr == "" {
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

	m := newAddressMatcher(addr)
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

// fileHolds reports whether the file name under root holds the address m
// looks for, reading it through buf.
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

// addressMatcher finds one email address in a stream of bytes, ignoring
// ASCII case, as a whole address: not preceded by a character that could
// belong to a local part, nor followed by one that could extend its domain.
type addressMatcher struct {
	addr   []byte // lower case
	window []byte // the unresolved tail of what was read, then the new chunk
}

func newAddressMatcher(addr string) *addressMatcher {
	return &addressMatcher{addr: []byte(strings.ToLower(addr))}
}

// in reports whether r holds the address, reading it in chunks of buf's
// size and keeping only len(addr)+2 bytes from one chunk to the next.
func (m *addressMatcher) in(r io.Reader, buf []byte) (bool, error) {
	n := len(m.addr)
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
		for i := 0; ; {
			j := indexFrom(w, m.addr, i)
			if j < 0 {
				break
			}
			end := j + n
			if !eof && end+2 > len(w) {
				break // decided once the next chunk is in
			}
			prev := before
			if j > 0 {
				prev = w[j-1]
			}
			if !localPartByte(prev) && !domainContinues(w[end:]) {
				return true, nil
			}
			i = j + 1
		}
		if eof {
			return false, nil
		}
		// Keep what an occurrence not yet decided, and the byte before it,
		// may need.
		if keep := n + 2; len(w) > keep {
			before = w[len(w)-keep-1]
			m.window = append(m.window[:0], w[len(w)-keep:]...)
		}
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
