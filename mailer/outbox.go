package mailer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// maxIDInName bounds the part of a file name taken from the Message-ID.
const maxIDInName = 120

// OutboxTransport is a Transport that writes each message as an .eml file in
// a directory, for development, tests and pickup by another agent. A file
// appears whole or not at all (written to a temporary file, synced, then
// renamed).
type OutboxTransport struct {
	dir string
}

// NewOutboxTransport returns a transport writing into dir, which it creates
// (mode 0o750) when missing.
func NewOutboxTransport(dir string) (*OutboxTransport, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create outbox %s: %w", dir, err)
	}
	return &OutboxTransport{dir: dir}, nil
}

// Dir returns the directory the transport writes into.
func (t *OutboxTransport) Dir() string { return t.dir }

// FileName returns the name (without directory) under which e is written:
// its Date in UTC, so names sort in time order, then its Message-ID made
// safe for a file name. Both are stable for a retried message, so a retry
// replaces the file instead of adding one.
func FileName(e *Email) string {
	b := make([]byte, 0, 20+len(e.MessageID)+24)
	b = e.Date.UTC().AppendFormat(b, "20060102T150405Z")
	b = append(b, '-')
	changed := false
	for i := 0; i < len(e.MessageID); i++ {
		if i == maxIDInName {
			changed = true
			break
		}
		c := e.MessageID[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.' || c == '-' || c == '_' || c == '@' || c == '+':
			b = append(b, c)
		default:
			b = append(b, '_')
			changed = true
		}
	}
	if changed {
		// Two IDs that differ only where they were sanitised or cut must
		// not share a file.
		sum := sha256.Sum256([]byte(e.MessageID))
		b = append(b, '-')
		b = hex.AppendEncode(b, sum[:6])
	}
	return string(append(b, ".eml"...))
}

// Send writes e to its file (see FileName), preceded by a Return-Path header
// as a delivery agent would add. Invalid messages fail with a permanent
// *SendError at StageEncode, file system errors with a temporary one at
// StageWrite.
func (t *OutboxTransport) Send(ctx context.Context, e *Email) error {
	if err := ctx.Err(); err != nil {
		return &SendError{Stage: StageWrite, Err: err}
	}
	var buf bytes.Buffer
	rp := e.ReturnPath
	if rp == "" {
		rp = e.From
	}
	buf.WriteString("Return-Path: <")
	buf.WriteString(rp)
	buf.WriteString(">\r\n")
	if _, err := e.WriteTo(&buf); err != nil {
		return &SendError{Stage: StageEncode, Permanent: true, Err: err}
	}
	if err := writeFileAtomic(t.dir, FileName(e), buf.Bytes()); err != nil {
		return &SendError{Stage: StageWrite, Err: err}
	}
	return nil
}

// Close implements Transport; the outbox holds no resources.
func (t *OutboxTransport) Close() error { return nil }

// writeFileAtomic writes data to dir/name through a synced temporary file in
// the same directory and a rename, then syncs the directory so the rename
// itself survives a crash.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, ".outbox-*.tmp") // not *.eml: readers glob for those
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o640); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		// Some file systems cannot sync a directory; the rename stands.
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
