package chaos

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the driver the checks read the database with

	"herald/internal/faultsmtp"
)

// adminToken is the admin API token of every test configuration.
const adminToken = "chaos-admin-token"

// built caches the herald binary across the tests of one run.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// heraldBinary builds ./cmd/herald once per test binary run and returns its
// path. The build shares Go's cache with the test build, so it links rather
// than compiles.
func heraldBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "herald-chaos-bin-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "herald")
		cmd := exec.Command("go", "build", "-o", built.path, "herald/cmd/herald")
		built.out, built.err = cmd.CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build herald: %v\n%s", built.err, built.out)
	}
	return built.path
}

// TestMain removes the binary heraldBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// envInt reads an integer knob from the environment, with a default.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// envDuration reads a duration knob from the environment, with a default.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// seed returns the seed named by the environment variable, or a fresh one,
// and logs it so that a failure can be replayed.
func seed(t *testing.T, name string) uint64 {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		s = n
	}
	t.Logf("seed %d (replay with %s=%d)", s, name, s)
	return s
}

// site is one Herald installation for a test: a configuration, its SQLite
// file and its readers.
type site struct {
	bin     string
	dir     string
	config  string
	dbPath  string
	base    string // the HTTP base URL of serve
	readers []string
	logPath string // where the children's stderr is appended
}

// siteOptions are the parts of the configuration a test chooses.
type siteOptions struct {
	smtpPort    int
	connections int           // smtp.connections and delivery.workers
	batchSize   int           // delivery.batch_size
	lease       time.Duration // delivery.lease
	retryBase   time.Duration // delivery.retry_base
	retryMax    time.Duration // delivery.retry_max
}

// newSite writes the configuration, creates the database with n active
// readers of the daily newsletter and five articles, and returns the site.
func newSite(t *testing.T, opts siteOptions, n int) *site {
	t.Helper()
	s := &site{bin: heraldBinary(t), dir: t.TempDir()}
	s.dbPath = filepath.Join(s.dir, "herald.db")
	s.logPath = filepath.Join(s.dir, "herald.log")
	addr := freeAddr(t)
	s.base = "http://" + addr
	// The schedule is New Year's morning: the scheduler never builds an
	// issue during a test, only the one the test asks for.
	config := fmt.Sprintf(`http:
  addr: %s
  base_url: %s
  shutdown_timeout: 20s
database:
  driver: sqlite
  dsn: %s
mail:
  transport: smtp
  from: "PassBlue <news@passblue.example>"
  postal_address: "777 UN Plaza, New York, NY 10017"
smtp:
  host: 127.0.0.1
  port: %d
  tls: none
  connections: %d
  timeout: 20s
admin:
  token: %s
delivery:
  workers: %d
  batch_size: %d
  lease: %s
  retry_base: %s
  retry_max: %s
digest:
  check_interval: 1h
log:
  level: info
newsletters:
  - id: daily
    name: The Daily Brief
    schedule: "0 7 1 1 *"
    max_articles: 5
    new_reader_articles: 5
`, addr, s.base, s.dbPath, opts.smtpPort, opts.connections, adminToken, opts.connections, opts.batchSize,
		opts.lease, opts.retryBase, opts.retryMax)
	s.config = filepath.Join(s.dir, "config.yaml")
	writeFile(t, s.config, config)

	var csv strings.Builder
	csv.WriteString("email,name,newsletters\n")
	for i := range n {
		r := fmt.Sprintf("reader%06d@example.org", i)
		s.readers = append(s.readers, r)
		fmt.Fprintf(&csv, "%s,Reader %d,daily\n", r, i)
	}
	writeFile(t, filepath.Join(s.dir, "readers.csv"), csv.String())
	s.run(t, "subscribers", "import", filepath.Join(s.dir, "readers.csv"), "--status", "active")

	arts := filepath.Join(s.dir, "articles")
	if err := os.Mkdir(arts, 0o750); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range 5 {
		writeFile(t, filepath.Join(arts, fmt.Sprintf("story-%d.md", i)), fmt.Sprintf(`---
title: "Story %d of the day"
url: https://passblue.example/2026/chaos/story-%d/
author: Desk
date: %s
summary: The summary of story %d, long enough to fill a line or two of the digest.
---

%s
`, i, i, now.Add(-time.Duration(i+1)*time.Hour).Format(time.RFC3339), i, strings.Repeat("A paragraph of the story, as a newsroom writes it. ", 30)))
	}
	s.run(t, "articles", "import", arts)
	return s
}

// run runs a herald command to completion and fails the test unless it
// exits 0.
func (s *site) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, append(args, "--config", s.config)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("herald %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// child is a herald process the test may kill.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // Wait's result, valid once done is closed
}

// start runs herald with args as a child process whose stderr is appended
// to the site's log. The test's cleanup kills it if it still runs.
func (s *site) start(t *testing.T, stdout io.Writer, args ...string) *child {
	t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "\n=== herald %s\n", strings.Join(args, " "))
	cmd := exec.Command(s.bin, append(args, "--config", s.config)...)
	cmd.Stdout, cmd.Stderr = stdout, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// serve starts `herald serve` and waits until it answers /readyz.
func (s *site) serve(t *testing.T) *child {
	t.Helper()
	c := s.start(t, io.Discard, "serve")
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		select {
		case <-c.done:
			t.Fatalf("herald serve exited before it was ready: %v\n%s", c.err, s.logTail(t))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald serve was not ready within 30 s: %v\n%s", err, s.logTail(t))
		}
	}
}

// signal sends sig to the child and waits for it to exit, for at most
// within.
func (c *child) signal(t *testing.T, sig os.Signal, within time.Duration) error {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-c.done:
		return c.err
	case <-time.After(within):
		t.Fatalf("herald did not exit within %v of %v", within, sig)
		return nil
	}
}

// logTail returns the end of the children's log, for failure messages.
func (s *site) logTail(t *testing.T) string {
	t.Helper()
	b, _ := os.ReadFile(s.logPath)
	const max = 6000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// sendIssue asks serve for an issue of the daily newsletter now and returns
// its id.
func (s *site) sendIssue(t *testing.T) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/api/v1/newsletters/daily/issues", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var accepted struct {
		ID int64 `json:"id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &accepted) != nil || accepted.ID == 0 {
		t.Fatalf("POST /api/v1/newsletters/daily/issues: %d %s", resp.StatusCode, body)
	}
	return accepted.ID
}

// openDB opens the site's database for the checks. It is only read.
func (s *site) openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", s.dbPath+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// row is one outbox row of an issue, with its recipient.
type row struct {
	email, status, messageID, leaseOwner, subscriberStatus string
	attempts                                               int
}

// issueRows reads every outbox row of the issue.
func issueRows(t *testing.T, db *sql.DB, issueID int64) []row {
	t.Helper()
	rows, err := db.Query(`SELECT s.email, m.status, m.message_id, coalesce(m.lease_owner, ''), s.status, m.attempts
        FROM messages m JOIN subscribers s ON s.id = m.subscriber_id
        WHERE m.issue_id = ? ORDER BY m.id`, issueID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.email, &r.status, &r.messageID, &r.leaseOwner, &r.subscriberStatus, &r.attempts); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// statusCounts counts rows by status.
func statusCounts(rows []row) map[string]int {
	n := map[string]int{}
	for _, r := range rows {
		n[r.status]++
	}
	return n
}

// pending returns how many of the issue's messages are queued or sending.
func pending(t *testing.T, db *sql.DB, issueID int64) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM messages WHERE issue_id = ? AND status IN ('queued', 'sending')`, issueID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitSettled polls until none of the issue's messages is pending.
func waitSettled(t *testing.T, s *site, db *sql.DB, issueID int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := pending(t, db, issueID)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages of issue %d still pending after %v\n%s", n, issueID, within, s.logTail(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agree checks that the database and the relay tell the same story of the
// issue: every row settled (none queued, sending or failed), the recipients
// of the rows marked sent are exactly those the relay received the issue
// for, with the Message-ID their row carries, and bounced rows received
// nothing. It returns the tally of what the relay received.
func agree(t *testing.T, db *sql.DB, relay *faultsmtp.Server, issueID int64, want []string) faultsmtp.Tally {
	t.Helper()
	rows := issueRows(t, db, issueID)
	tally := relay.Tally(faultsmtp.Check{Want: want, MessageIDPrefix: fmt.Sprintf("<herald.digest.%d.", issueID)})
	for i, p := range tally.Problems {
		if i == 20 {
			t.Errorf("... and %d more", len(tally.Problems)-i)
			break
		}
		t.Error(p)
	}
	sent := 0
	for _, r := range rows {
		got := tally.Received[r.email]
		switch r.status {
		case "sent":
			sent++
			if len(got) == 0 {
				t.Errorf("%s: the row says sent, the relay received nothing", r.email)
			} else if got[0] != "<"+r.messageID+">" {
				t.Errorf("%s: the relay received %s, the row's Message-ID is <%s>", r.email, got[0], r.messageID)
			}
		case "bounced":
			if len(got) != 0 {
				t.Errorf("%s: the row says bounced, the relay received %d copies", r.email, len(got))
			}
		default:
			t.Errorf("%s: row left %s (attempts %d, lease owner %q)", r.email, r.status, r.attempts, r.leaseOwner)
		}
	}
	if sent != len(tally.Received) {
		t.Errorf("rows sent = %d, distinct recipients the relay received = %d", sent, len(tally.Received))
	}
	return tally
}

// repeated lists the recipients who received more than one copy, sorted.
func repeated(tally faultsmtp.Tally) []string {
	var out []string
	for rcpt, ids := range tally.Received {
		if len(ids) > 1 {
			out = append(out, fmt.Sprintf("%s x%d", rcpt, len(ids)))
		}
	}
	sort.Strings(out)
	return out
}

// writeFile writes a test file.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
