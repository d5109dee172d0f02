package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServeTimeoutsCloseSlowClients: the http.* timeouts reach the real
// server. A client that never finishes its headers (slowloris), one that
// never sends the body it announced, and an idle keep-alive connection are
// each closed by the server. Each guard is shorter than the default the
// setting replaces (5 s, 15 s, 2 min) and several times the configured
// value, so the test fails if a setting does not reach the server, not
// when the machine is slow.
func TestServeTimeoutsCloseSlowClients(t *testing.T) {
	t.Setenv("HERALD_HTTP_READ_HEADER_TIMEOUT", "1s")
	t.Setenv("HERALD_HTTP_READ_TIMEOUT", "2s")
	t.Setenv("HERALD_HTTP_IDLE_TIMEOUT", "1s")
	_, port := startSink(t)
	h := startHerald(t, port)
	addr := strings.TrimPrefix(h.base, "http://")

	// closedByServer reads what the server sends until it closes the
	// connection; a read that outlasts guard fails the test.
	closedByServer := func(what string, c net.Conn, guard time.Duration) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(guard))
		got, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: the server kept the connection open", what)
		}
		return string(got)
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	c := dial()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nX-Slow: 1\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := closedByServer("unfinished headers", c, 4500*time.Millisecond); strings.Contains(got, "200 OK") {
		t.Errorf("unfinished headers were answered: %q", got)
	}

	c = dial()
	if _, err := io.WriteString(c, "POST /subscribe HTTP/1.1\r\nHost: "+addr+
		"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail="); err != nil {
		t.Fatal(err)
	}
	if got := closedByServer("unfinished body", c, 12*time.Second); strings.Contains(got, "Check your inbox") {
		t.Errorf("an unfinished body was taken as a signup: %q", got)
	}

	c = dial()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /healthz on a keep-alive connection: %d, close %v", resp.StatusCode, resp.Close)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle keep-alive connection: %v, want the server to close it", err)
	}
}

// TestEndToEndNameCannotSmuggleALink: a bot signs a victim up with a
// "name" that is a link, hoping the confirmation mail shows it. The mail
// that reaches the relay carries neither the link nor its text, in either
// part or in To; a name with a line break is refused before anything is
// sent.
func TestEndToEndNameCannotSmuggleALink(t *testing.T) {
	relay, port := startSink(t)
	h := startHerald(t, port)
	for i, name := range []string{"http://evil.example", "Click www.evil.com", "Win at evil.com today", "<a href=\"https://evil.example\">Jane</a>"} {
		email := "victim" + string(rune('a'+i)) + "@example.org"
		if resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {email}, "name": {name}, "newsletters": {"daily"}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /subscribe %q: %d\n%s", name, resp.StatusCode, body)
		}
		env := relay.waitFor(t, email, "confirm")
		checkEveryEmail(t, env, h.base)
		for part, text := range map[string]string{"text": env.Text, "HTML": env.HTML, "To": env.GetHeader("To")} {
			if strings.Contains(strings.ToLower(text), "evil") {
				t.Errorf("name %q reached the confirmation's %s:\n%s", name, part, text)
			}
		}
	}
	resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {"crlf@example.org"}, "name": {"Jane\r\nBcc: all@example.org"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "name") {
		t.Errorf("a name with a line break: %d, want 422 naming the field\n%s", resp.StatusCode, body)
	}
}

// TestEndToEndSignupAnswersAreIdentical: the whole answer to a signup,
// status, headers (but Date and X-Request-Id) and body, is the same for an
// address that is new, pending, active or unsubscribed, for the form and
// for JSON, so a signup tells a stranger nothing about the list.
func TestEndToEndSignupAnswersAreIdentical(t *testing.T) {
	relay, port := startSink(t)
	h := startHeraldWith(t, port, digestNewsletters)
	h.subscribeConfirmed(t, relay, "active@example.org", "daily")
	h.subscribeConfirmed(t, relay, "left@example.org", "daily")
	welcome := relay.waitFor(t, "left@example.org", "Welcome")
	unsub := regexp.MustCompile(regexp.QuoteMeta(h.base) + `/unsubscribe/[A-Za-z0-9_-]+`).FindString(welcome.Text)
	if resp, body := postForm(t, unsub, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("unsubscribe: %d\n%s", resp.StatusCode, body)
	}
	if resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {"pending@example.org"}, "newsletters": {"daily"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("signup: %d\n%s", resp.StatusCode, body)
	}

	answer := func(email string, asJSON bool) string {
		t.Helper()
		var req *http.Request
		if asJSON {
			req, _ = http.NewRequest(http.MethodPost, h.base+"/subscribe", strings.NewReader(`{"email":"`+email+`","newsletters":["daily"]}`))
			req.Header.Set("Content-Type", "application/json")
		} else {
			req, _ = http.NewRequest(http.MethodPost, h.base+"/subscribe", strings.NewReader(url.Values{"email": {email}, "newsletters": {"daily"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, body := do(t, req)
		resp.Header.Del("Date")
		resp.Header.Del("X-Request-Id")
		var b strings.Builder
		fmt.Fprintf(&b, "%d\n", resp.StatusCode)
		_ = resp.Header.Write(&b)
		return b.String() + "\n" + body
	}
	for _, asJSON := range []bool{false, true} {
		first := answer("new"+strconv.FormatBool(asJSON)+"@example.org", asJSON)
		for _, email := range []string{"pending@example.org", "active@example.org", "left@example.org"} {
			if got := answer(email, asJSON); got != first {
				t.Errorf("JSON %v: the answer for %s differs from a new address's:\n%s\n--- new:\n%s", asJSON, email, got, first)
			}
		}
	}
	if st := h.adminStatus(t, "left@example.org"); st != "unsubscribed" {
		t.Errorf("a stranger's signup changed the unsubscribed reader to %s", st)
	}
}
