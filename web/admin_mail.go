package web

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jhillyerd/enmime/v2"
	"github.com/labstack/echo/v4"

	"herald"
)

// Limits of the mail viewer.
const (
	mailListMax   = 200      // messages listed, newest first
	mailFileMax   = 10 << 20 // the largest .eml shown
	mailHeaderMax = 64 << 10 // header bytes read per listed message
)

// mailShownHeaders are the headers the message page shows, in order.
var mailShownHeaders = []string{
	"From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
	"Return-Path", "Feedback-ID", "DKIM-Signature",
}

// adminMailPage lists the outbox's messages.
type adminMailPage struct {
	adminBase
	Dir      string
	Messages []mailRow
	More     int // messages not listed
}

// mailRow is one message in the list.
type mailRow struct {
	Name     string
	URL      string
	Subject  string
	To       string
	Modified time.Time
	Size     int64
}

// adminMailMessagePage shows one message.
type adminMailMessagePage struct {
	adminBase
	Name    string
	Subject string
	Headers []mailHeader
	Text    string
	HTML    string // for the sandboxed frame's srcdoc
	Raw     string
	Errors  []string // what the MIME parser found wrong
}

// mailHeader is one header line.
type mailHeader struct {
	Name  string
	Value string
}

// outbox opens the outbox directory: ENOTFOUND when this server does not
// write mail there.
func (s *Server) outbox() (*os.Root, error) {
	if s.cfg.OutboxDir == "" {
		return nil, herald.Errorf(herald.ENOTFOUND, "The mail viewer shows the outbox transport's files; this server sends mail through a relay.")
	}
	r, err := os.OpenRoot(s.cfg.OutboxDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // nothing written yet
	} else if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	return r, nil
}

// mailName reports whether name is a plain .eml file name: no path, no
// parent, no hidden file.
func mailName(name string) bool {
	if !strings.HasSuffix(name, ".eml") || strings.HasPrefix(name, ".") || len(name) > 255 {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '+', r == '@', r == '=':
		default:
			return false
		}
	}
	return !strings.Contains(name, "..")
}

// handleAdminMail lists the outbox's .eml files, newest first.
func (s *Server) handleAdminMail(c echo.Context) error {
	root, err := s.outbox()
	if err != nil {
		return err
	}
	p := adminMailPage{adminBase: s.adminFrame(c, "Mail", "Mail"), Dir: s.cfg.OutboxDir}
	if root == nil {
		return s.renderAdmin(c, http.StatusOK, adminPageMail, p)
	}
	defer root.Close()
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return fmt.Errorf("list outbox: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !mailName(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone since the listing
		}
		p.Messages = append(p.Messages, mailRow{Name: e.Name(), Modified: info.ModTime(), Size: info.Size(),
			URL: s.prefix + "/admin/mail/" + url.PathEscape(e.Name())})
	}
	slices.SortFunc(p.Messages, func(a, b mailRow) int {
		if c := b.Modified.Compare(a.Modified); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	if len(p.Messages) > mailListMax {
		p.More = len(p.Messages) - mailListMax
		p.Messages = p.Messages[:mailListMax]
	}
	var dec mime.WordDecoder
	for i := range p.Messages {
		m := &p.Messages[i]
		f, err := root.Open(m.Name)
		if err != nil {
			continue
		}
		msg, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(f, mailHeaderMax)))
		f.Close()
		if err != nil {
			continue
		}
		m.Subject, m.To = msg.Header.Get("Subject"), msg.Header.Get("To")
		if d, err := dec.DecodeHeader(m.Subject); err == nil {
			m.Subject = d
		}
	}
	return s.renderAdmin(c, http.StatusOK, adminPageMail, p)
}

// handleAdminMailMessage shows one message: its headers, text part, HTML
// part in a sandboxed frame, and its source.
func (s *Server) handleAdminMailMessage(c echo.Context) error {
	notFound := herald.Errorf(herald.ENOTFOUND, "There is no such message in the outbox.")
	name, err := url.PathUnescape(c.Param("name"))
	if err != nil || !mailName(name) {
		return notFound
	}
	root, err := s.outbox()
	if err != nil {
		return err
	}
	if root == nil {
		return notFound
	}
	defer root.Close()
	// os.Root refuses any name that would leave the directory, symbolic
	// links included, whatever mailName let through.
	// A name that does not exist and one that escapes get the same answer.
	f, err := root.Open(name)
	if err != nil {
		return notFound
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, mailFileMax+1))
	if err != nil {
		return fmt.Errorf("read outbox message: %w", err)
	}
	if len(raw) > mailFileMax {
		return herald.Errorf(herald.ETOOLARGE, "This message is larger than %s: open it from the outbox directory.", byteSize(mailFileMax))
	}
	env, err := enmime.ReadEnvelope(strings.NewReader(string(raw)))
	if err != nil {
		return herald.Errorf(herald.EINVALID, "This file is not a message a MIME parser can read.")
	}
	p := adminMailMessagePage{
		adminBase: s.adminFrame(c, "Message", "Mail"), Name: name, Subject: env.GetHeader("Subject"),
		Text: env.Text, HTML: env.HTML, Raw: string(raw),
	}
	if p.Subject != "" {
		p.Title = p.Subject
	}
	for _, h := range mailShownHeaders {
		for _, v := range env.GetHeaderValues(h) {
			p.Headers = append(p.Headers, mailHeader{Name: h, Value: v})
		}
	}
	for _, e := range env.Errors {
		p.Errors = append(p.Errors, e.Error())
	}
	adminHeaders(c, adminPreviewCSP)
	return s.renderAdmin(c, http.StatusOK, adminPageMailMsg, p)
}
