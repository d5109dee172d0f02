package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jhillyerd/enmime/v2"
)

// sink is an in-process SMTP relay that keeps every message it accepts.
type sink struct {
	mu       sync.Mutex
	messages []sunk
	arrived  chan struct{}
}

type sunk struct {
	from string
	to   []string
	data []byte
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s    *sink
	from string
	to   []string
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error { ss.from = from; return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.messages = append(ss.s.messages, sunk{from: ss.from, to: ss.to, data: b})
	ss.s.mu.Unlock()
	select {
	case ss.s.arrived <- struct{}{}:
	default:
	}
	return nil
}
func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

// startSink runs a relay on a loopback port and returns it with the port.
func startSink(t *testing.T) (*sink, int) {
	t.Helper()
	s := &sink{arrived: make(chan struct{}, 1)}
	srv := smtp.NewServer(s)
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s, ln.Addr().(*net.TCPAddr).Port
}

// waitFor returns the first message to rcpt whose Subject contains subject.
func (s *sink) waitFor(t *testing.T, rcpt, subject string) *enmime.Envelope {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		s.mu.Lock()
		for _, m := range s.messages {
			if len(m.to) == 1 && m.to[0] == rcpt {
				env, err := enmime.ReadEnvelope(bytes.NewReader(m.data))
				if err != nil {
					s.mu.Unlock()
					t.Fatalf("the relay received a message a MIME parser cannot read: %v", err)
				}
				if strings.Contains(env.GetHeader("Subject"), subject) {
					s.mu.Unlock()
					return env
				}
			}
		}
		s.mu.Unlock()
		select {
		case <-s.arrived:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no message to %s with subject %q arrived", rcpt, subject)
		}
	}
}

// count returns how many messages went to rcpt.
func (s *sink) count(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.messages {
		if len(m.to) == 1 && m.to[0] == rcpt {
			n++
		}
	}
	return n
}

// herald is a running `herald serve` for one test.
type heraldServer struct {
	base   string
	token  string
	config string // the configuration file, for commands run beside it
	stderr *lockedBuffer
	stop   func() int
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startHerald runs serve through run() with the SMTP transport pointed at a
// relay on smtpPort, and waits until it answers.
func startHerald(t *testing.T, smtpPort int) *heraldServer {
	t.Helper()
	return startHeraldWith(t, smtpPort, "")
}

// startHeraldWith is startHerald with extra configuration, appended to
// testConfig's (so text starting "  - id:" adds newsletters). A zero
// smtpPort keeps the outbox transport.
func startHeraldWith(t *testing.T, smtpPort int, extra string) *heraldServer {
	t.Helper()
	addr := freeAddr(t)
	h := &heraldServer{base: "http://" + addr, token: "e2e-admin-token", stderr: &lockedBuffer{}}
	path := testConfig(t, extra+"http:\n  addr: "+addr+"\n  base_url: "+h.base+"\n  shutdown_timeout: 5s\n")
	h.config = path
	if smtpPort == 0 {
		// No relay: mail goes to the outbox directory of testConfig.
		t.Setenv("HERALD_MAIL_TRANSPORT", "outbox")
	} else {
		t.Setenv("HERALD_MAIL_TRANSPORT", "smtp")
		t.Setenv("HERALD_SMTP_HOST", "127.0.0.1")
		t.Setenv("HERALD_SMTP_PORT", strconv.Itoa(smtpPort))
		t.Setenv("HERALD_SMTP_TLS", "none")
	}
	t.Setenv("HERALD_ADMIN_TOKEN", h.token)
	t.Setenv("HERALD_LIMITS_SIGNUP_PER_IP", "1000") // the per-IP limit has its own tests in web/
	t.Setenv("HERALD_LIMITS_SIGNUP_PER_SUBNET", "1000")
	t.Setenv("HERALD_LIMITS_ATTACK_THRESHOLD", "1000000") // attack mode has its own tests in web/
	t.Setenv("HERALD_LOG_LEVEL", "info")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, io.Discard, h.stderr) }()
	var once sync.Once
	code := -1
	h.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Error("serve did not stop within 20 s")
			}
		})
		return code
	}
	t.Cleanup(func() { h.stop() })

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(h.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case c := <-done:
			t.Fatalf("serve exited %d before answering:\n%s", c, h.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become ready: %v\n%s", err, h.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// noRedirects is an HTTP client that shows redirects instead of following.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func postForm(t *testing.T, u string, v url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

// adminStatus looks email up through the admin API and returns its status.
func (h *heraldServer) adminStatus(t *testing.T, email string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.base+"/api/v1/subscribers?q="+url.QueryEscape(email), nil)
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, body := do(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/subscribers: %d %s", resp.StatusCode, body)
	}
	var page struct {
		Items []struct {
			Email  string `json:"email"`
			Status string `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("admin API answer is not JSON: %v: %s", err, body)
	}
	if len(page.Items) != 1 || page.Items[0].Email != email {
		t.Fatalf("admin API found %+v for %s", page.Items, email)
	}
	return page.Items[0].Status
}

// checkEveryEmail asserts what the contract promises of every email.
func checkEveryEmail(t *testing.T, env *enmime.Envelope, base string) {
	t.Helper()
	if ct := env.Root.ContentType; ct != "multipart/alternative" {
		t.Errorf("root content type %q, want multipart/alternative", ct)
	}
	last := env.Root.FirstChild
	for last != nil && last.NextSibling != nil {
		last = last.NextSibling
	}
	if first := env.Root.FirstChild; first == nil || first.ContentType != "text/plain" || last == nil || last.ContentType != "text/html" {
		t.Errorf("parts are not text first, HTML last")
	}
	for _, h := range []string{"Message-ID", "Date", "From", "To", "Subject"} {
		if env.GetHeader(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	if lu := env.GetHeader("List-Unsubscribe"); !strings.HasPrefix(lu, "<"+base+"/unsubscribe/") {
		t.Errorf("List-Unsubscribe = %q", lu)
	}
	if lup := env.GetHeader("List-Unsubscribe-Post"); lup != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", lup)
	}
	for part, body := range map[string]string{"text": env.Text, "html": env.HTML} {
		if !strings.Contains(body, "777 UN Plaza") {
			t.Errorf("%s part lacks the postal address", part)
		}
		if !strings.Contains(body, base+"/unsubscribe/") {
			t.Errorf("%s part lacks a visible unsubscribe link", part)
		}
	}
}

// TestEndToEndDoubleOptIn walks a reader through signup, confirmation and
// one-click unsubscribe against a real SMTP relay, checking every state on
// the way through the admin API.
func TestEndToEndDoubleOptIn(t *testing.T) { eachEngine(t, testEndToEndDoubleOptIn) }

func testEndToEndDoubleOptIn(t *testing.T) {
	relay, port := startSink(t)
	h := startHerald(t, port)
	const reader = "ana.reader@example.org"

	resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {"Ana.Reader@Example.org"}, "name": {"Ana"}, "newsletters": {"daily"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(body), "check your inbox") {
		t.Fatalf("POST /subscribe: %d\n%s", resp.StatusCode, body)
	}
	if got := h.adminStatus(t, reader); got != "pending" {
		t.Fatalf("status after signup = %s, want pending", got)
	}

	confirmation := relay.waitFor(t, reader, "confirm")
	checkEveryEmail(t, confirmation, h.base)
	m := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/confirm/([A-Za-z0-9_-]{43})`).FindStringSubmatch(confirmation.Text)
	if m == nil {
		t.Fatalf("no confirmation link in the text part:\n%s", confirmation.Text)
	}
	confirmURL := m[0]

	// A GET (a mail scanner prefetching) shows a button and changes nothing.
	req, _ := http.NewRequest(http.MethodGet, confirmURL, nil)
	resp, body = do(t, req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `method="post"`) {
		t.Fatalf("GET confirm: %d, a form expected:\n%s", resp.StatusCode, body)
	}
	if got := h.adminStatus(t, reader); got != "pending" {
		t.Fatalf("status after GET confirm = %s, want pending", got)
	}

	resp, body = postForm(t, confirmURL, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST confirm: %d\n%s", resp.StatusCode, body)
	}
	if got := h.adminStatus(t, reader); got != "active" {
		t.Fatalf("status after POST confirm = %s, want active", got)
	}
	if resp, _ = postForm(t, confirmURL, nil); resp.StatusCode != http.StatusGone {
		t.Errorf("second POST confirm: %d, want 410", resp.StatusCode)
	}

	welcome := relay.waitFor(t, reader, "Welcome")
	checkEveryEmail(t, welcome, h.base)
	if welcome.GetHeader("Message-ID") == confirmation.GetHeader("Message-ID") {
		t.Error("the welcome reuses the confirmation's Message-ID")
	}

	// RFC 8058 one-click, as a mailbox provider sends it: no cookies, form body.
	lu := strings.Trim(welcome.GetHeader("List-Unsubscribe"), "<>")
	if i := strings.Index(lu, ">"); i >= 0 {
		lu = lu[:i]
	}
	req, _ = http.NewRequest(http.MethodPost, lu, strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = do(t, req)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || len(resp.Cookies()) != 0 {
		t.Fatalf("one-click unsubscribe: %d location=%q cookies=%v\n%s", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), body)
	}
	if got := h.adminStatus(t, reader); got != "unsubscribed" {
		t.Fatalf("status after one-click = %s, want unsubscribed", got)
	}

	if code := h.stop(); code != exitOK {
		t.Errorf("serve exited %d, want 0:\n%s", code, h.stderr.String())
	}
	logs := h.stderr.String()
	for _, secret := range []string{reader, "Ana.Reader", m[1], h.token} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	if !strings.Contains(logs, "request_id") {
		t.Errorf("the log has no request ids:\n%s", logs)
	}
}

// TestEndToEndNoEnumerationAndThrottle: the answer to a signup is the same
// byte for byte for a new, a pending and an active address, and a pending
// address gets one confirmation however often it is signed up.
func TestEndToEndNoEnumerationAndThrottle(t *testing.T) {
	eachEngine(t, testEndToEndNoEnumerationAndThrottle)
}

func testEndToEndNoEnumerationAndThrottle(t *testing.T) {
	relay, port := startSink(t)
	h := startHerald(t, port)

	signup := func(email string) (int, string) {
		resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {email}, "newsletters": {"daily"}})
		return resp.StatusCode, body
	}
	jsonSignup := func(email string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, h.base+"/subscribe", strings.NewReader(`{"email":"`+email+`","newsletters":["daily"]}`))
		req.Header.Set("Content-Type", "application/json")
		resp, body := do(t, req)
		return resp.StatusCode, body
	}

	// Make one address active.
	signup("active@example.org")
	env := relay.waitFor(t, "active@example.org", "confirm")
	link := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/confirm/[A-Za-z0-9_-]+`).FindString(env.Text)
	if resp, _ := postForm(t, link, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}
	signup("pending@example.org")

	codeNew, bodyNew := signup("new@example.org")
	codePending, bodyPending := signup("pending@example.org")
	codeActive, bodyActive := signup("active@example.org")
	if codeNew != http.StatusOK || codePending != codeNew || codeActive != codeNew {
		t.Errorf("statuses new/pending/active = %d/%d/%d", codeNew, codePending, codeActive)
	}
	if bodyPending != bodyNew || bodyActive != bodyNew {
		t.Errorf("signup answers differ between new, pending and active addresses")
	}
	jNew, jbNew := jsonSignup("new2@example.org")
	jPending, jbPending := jsonSignup("pending@example.org")
	jActive, jbActive := jsonSignup("active@example.org")
	if jNew != http.StatusAccepted || jPending != jNew || jActive != jNew || jbPending != jbNew || jbActive != jbNew {
		t.Errorf("JSON answers differ: %d %q / %d %q / %d %q", jNew, jbNew, jPending, jbPending, jActive, jbActive)
	}

	for i := 0; i < 5; i++ {
		signup("pending@example.org")
	}
	// Workers send in parallel, so wait for both the pending address's
	// first confirmation and a later one (new2's, queued after the repeats)
	// before counting: any extra confirmation would have been queued first.
	relay.waitFor(t, "pending@example.org", "confirm")
	relay.waitFor(t, "new2@example.org", "confirm")
	// The active address's welcome was queued before all of these, but a
	// worker may still be sending it when new2's confirmation arrives.
	relay.waitFor(t, "active@example.org", "Welcome")
	if n := relay.count("pending@example.org"); n != 1 {
		t.Errorf("pending address received %d confirmations, want 1", n)
	}
	if n := relay.count("active@example.org"); n != 2 { // its confirmation and welcome
		t.Errorf("active address received %d messages, want 2", n)
	}

	// Bad input: clear errors, nothing stored.
	if code, body := signup("not an address"); code != http.StatusUnprocessableEntity || !strings.Contains(body, "valid email") {
		t.Errorf("invalid address: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPost, h.base+"/subscribe", strings.NewReader(strings.Repeat("x", 70<<10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := do(t, req); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodPost, h.base+"/subscribe", strings.NewReader("email=x@example.org"))
	req.Header.Set("Content-Type", "text/plain")
	if resp, _ := do(t, req); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d, want 415", resp.StatusCode)
	}
	for _, tok := range []string{strings.Repeat("A", 43), "nonsense"} {
		req, _ = http.NewRequest(http.MethodGet, h.base+"/confirm/"+tok, nil)
		if resp, _ := do(t, req); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /confirm/%s: %d, want 404", tok, resp.StatusCode)
		}
	}
}
