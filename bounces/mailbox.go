package bounces

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Walk reads every message at path and calls fn with each one's source name
// and content, in order: path may be a single message (.eml), an mbox file
// (recognised by its first line, "From "), or a Maildir directory (its new/
// and cur/ messages, by file name). Walk stops at the first error fn
// returns and returns it.
func Walk(path string, fn func(source string, msg io.Reader) error) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return walkMaildir(path, fn)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(5)
	if string(head) == "From " {
		return ReadMbox(br, path, fn)
	}
	return fn(path, br)
}

// walkMaildir calls fn for each message of a Maildir: new/ then cur/, each
// in file name order (Maildir names start with the delivery time). Files
// whose names start with a dot are skipped; tmp/ holds deliveries in
// progress and is never read.
func walkMaildir(dir string, fn func(string, io.Reader) error) error {
	found := false
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		found = true
		slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			p := filepath.Join(dir, sub, e.Name())
			if err := readFile(p, fn); err != nil {
				return err
			}
		}
	}
	if !found {
		return fmt.Errorf("%s is a directory but not a Maildir (it has neither new/ nor cur/)", dir)
	}
	return nil
}

func readFile(path string, fn func(string, io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(path, f)
}

// ReadMbox splits an mbox stream into messages and calls fn for each, with
// source name+"#"+its position (from 1). A line starting "From " begins a
// message; mboxrd quoting (">From " for a "From " line of the body) is
// undone. Each message is held in memory up to MaxMessageSize+1 bytes,
// beyond which the rest is dropped, so that ParseMessage reports it as too
// large while the messages after it are still read. ReadMbox stops at the
// first error fn returns and returns it.
func ReadMbox(r io.Reader, name string, fn func(source string, msg io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		buf       bytes.Buffer
		n         int
		started   bool
		lineStart = true // the next chunk begins a line
	)
	flush := func() error {
		if !started {
			return nil
		}
		n++
		err := fn(name+"#"+strconv.Itoa(n), bytes.NewReader(buf.Bytes()))
		buf.Reset()
		return err
	}
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			atStart := lineStart
			lineStart = line[len(line)-1] == '\n'
			switch {
			case atStart && bytes.HasPrefix(line, []byte("From ")):
				if err := flush(); err != nil {
					return err
				}
				started = true
			case !started:
				// Text before the first "From " line is not a message.
			default:
				if q := bytes.TrimLeft(line, ">"); atStart && len(q) < len(line) && bytes.HasPrefix(q, []byte("From ")) {
					line = line[1:]
				}
				if room := MaxMessageSize + 1 - buf.Len(); room > 0 {
					buf.Write(line[:min(len(line), room)])
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return flush()
		} else if err != nil {
			return err
		}
	}
}

// readLine returns the next line with its ending. A line longer than the
// reader's buffer comes back in pieces; only the first piece of a line is
// checked for "From ".
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		err = nil
	}
	return line, err
}
