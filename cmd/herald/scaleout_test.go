package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"

	"herald/store/postgres/pgtest"
)

// scaleOutReaders is the size of the scale-out test's newsletter: the CI
// size, unless HERALD_SCALEOUT_READERS asks for another (20000 for the
// figure in docs/benchmarks.md).
const scaleOutReaders = 3000

// scaleOutWorkers is each instance's delivery.workers (and SMTP connections).
const scaleOutWorkers = 8

// TestScaleOut runs real `herald serve` processes on one PostgreSQL schema,
// all delivering into one SMTP server that records every message:
//
//  1. one instance sends an issue to every reader (the one-instance rate);
//  2. two more join and the three send the next issue: every reader gets it
//     exactly once (the three-instance rate);
//  3. the next issue, and one instance is killed (SIGKILL) mid-send: the
//     others finish its leased messages once the lease has run out, every
//     reader gets the issue, and the only repeats are messages the killed
//     instance had in hand (leased and not settled) at the kill, with the
//     same Message-ID.
//
// At the end the database's counts agree with what the SMTP server got.
func TestScaleOut(t *testing.T) {
	readers := scaleOutReaders
	if s := os.Getenv("HERALD_SCALEOUT_READERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("HERALD_SCALEOUT_READERS=%q: want a number >= 10", s)
		}
		readers = n
	}
	pgtest.Require(t)
	ctx := t.Context()
	dsn := pgtest.NewSchemaDSN(t)
	bin := buildHerald(t)
	relay, smtpPort := startRecordingSink(t)
	config := testConfig(t, "")
	env := []string{
		"HERALD_DATABASE_DRIVER=postgres",
		"HERALD_DATABASE_DSN=" + dsn,
		"HERALD_DATABASE_MAX_CONNS=6",
		"HERALD_MAIL_TRANSPORT=smtp",
		"HERALD_SMTP_HOST=127.0.0.1",
		"HERALD_SMTP_PORT=" + strconv.Itoa(smtpPort),
		"HERALD_SMTP_TLS=none",
		"HERALD_SMTP_CONNECTIONS=" + strconv.Itoa(scaleOutWorkers),
		"HERALD_ADMIN_TOKEN=scale-out-token",
		"HERALD_DELIVERY_WORKERS=" + strconv.Itoa(scaleOutWorkers),
		"HERALD_DELIVERY_BATCH_SIZE=50",
		"HERALD_DELIVERY_LEASE=5s",
		"HERALD_DIGEST_CHECK_INTERVAL=1s",
		"HERALD_LOG_LEVEL=warn",
	}

	// The schema, then the readers in one statement.
	migrate := exec.CommandContext(ctx, bin, "migrate", "--config", config)
	migrate.Env = append(os.Environ(), env...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("herald migrate: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	seedReaders(t, conn, readers)

	a := startProcess(t, bin, config, env)
	a.postArticle(t, "scale-1", "First Scale Story", time.Now().Add(-time.Hour))
	rate1 := sendIssue(t, a, relay, readers)
	t.Logf("1 instance: %d readers in %s: %.0f msg/s", readers, rate1.elapsed.Round(time.Millisecond), rate1.rate())
	if rate1.repeats != 0 {
		t.Errorf("one instance, nothing killed: %d repeats", rate1.repeats)
	}

	b := startProcess(t, bin, config, env)
	c := startProcess(t, bin, config, env)
	a.postArticle(t, "scale-2", "Second Scale Story", time.Now().Add(-time.Minute))
	rate3 := sendIssue(t, a, relay, readers)
	t.Logf("3 instances: %d readers in %s: %.0f msg/s (%.2fx one instance)", readers, rate3.elapsed.Round(time.Millisecond),
		rate3.rate(), rate3.rate()/rate1.rate())
	if rate3.repeats != 0 {
		t.Errorf("three instances, nothing killed: %d repeats", rate3.repeats)
	}
	for _, p := range []*process{a, b, c} {
		if relay.countFrom(rate3.issue, p.port) == 0 {
			t.Errorf("instance on port %d sent none of issue %d: the work was not shared", p.port, rate3.issue)
		}
	}

	// The next issue is asked of b, which starts on it at once, and b is
	// killed once it has sent a tenth of it.
	a.postArticle(t, "scale-3", "Third Scale Story", time.Now().Add(-time.Second))
	var inHand map[string]bool // b's leased, unsettled messages at the kill
	var killedAt time.Time
	killed := sendIssueWith(t, b, a, relay, readers, func(issue int64) {
		deadline := time.Now().Add(60 * time.Second)
		for relay.countFrom(issue, b.port) < readers/10 {
			if time.Now().After(deadline) {
				t.Fatalf("b sent %d messages of issue %d in 60 s", relay.countFrom(issue, b.port), issue)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.kill(t)
		killedAt = time.Now()
		inHand = leasedBy(t, conn, b.cmd.Process.Pid)
		t.Logf("killed the instance on port %d with %d messages in hand", b.port, len(inHand))
	})
	t.Logf("kill mid-send: %d readers in %s, %d repeats", readers, killed.elapsed.Round(time.Millisecond), killed.repeats)
	for mid, copies := range relay.repeated(killed.issue) {
		if !inHand[strings.Trim(mid, "<>")] {
			t.Errorf("%s was received %d times but was not in the killed instance's hands", mid, len(copies))
			for _, c := range copies {
				t.Logf("  copy from %d at kill%+v", c.port, c.at.Sub(killedAt))
			}
		}
		if copies[0].port != b.port {
			t.Errorf("%s: the first of its %d copies came from port %d, not the killed instance", mid, len(copies), copies[0].port)
		}
	}
	if killed.repeats > len(inHand) {
		t.Errorf("%d repeats, more than the %d messages in hand at the kill", killed.repeats, len(inHand))
	}
	// A sent message is recorded before its worker sends the next: at most
	// one repeat per worker of the killed instance.
	if killed.repeats > scaleOutWorkers {
		t.Errorf("%d repeats, more than the killed instance's %d workers", killed.repeats, scaleOutWorkers)
	}

	// The database agrees with the relay, issue by issue.
	for _, r := range []issueRun{rate1, rate3, killed} {
		counts := issueCounts(t, conn, r.issue)
		if counts["sent"] != readers || len(counts) != 1 {
			t.Errorf("issue %d: message statuses %v, want %d sent and nothing else", r.issue, counts, readers)
		}
		if got := relay.distinct(r.issue); got != readers {
			t.Errorf("issue %d: the relay has %d distinct messages, the database %d sent", r.issue, got, counts["sent"])
		}
		if got := relay.recipients(r.issue); got != readers {
			t.Errorf("issue %d: %d distinct recipients, want %d", r.issue, got, readers)
		}
	}

	for _, p := range []*process{a, c} {
		if code := p.stop(t); code != 0 {
			t.Errorf("instance on port %d exited %d:\n%s", p.port, code, p.stderr.String())
		}
	}
}

// buildHerald builds this package's binary into a temporary directory.
func buildHerald(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// seedReaders inserts n active readers of daily, spread over 50 domains, in
// one statement.
func seedReaders(t *testing.T, conn *pgx.Conn, n int) {
	t.Helper()
	_, err := conn.Exec(t.Context(), `WITH s AS (
            INSERT INTO subscribers (email, name, status, created_at, updated_at, confirmed_at)
            SELECT 'reader' || g || '@d' || (g % 50) || '.example', 'Reader ' || g, 'active',
                   now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
            FROM generate_series(1, $1) g
            RETURNING id)
        INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id) SELECT id, 'daily' FROM s`, n)
	if err != nil {
		t.Fatalf("seed readers: %v", err)
	}
}

// leasedBy returns the Message-IDs the process pid holds under lease: its
// engine's owner name is host-pid-random.
func leasedBy(t *testing.T, conn *pgx.Conn, pid int) map[string]bool {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT message_id FROM messages
        WHERE status = 'sending' AND lease_owner LIKE $1`, "%-"+strconv.Itoa(pid)+"-%")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	var mid string
	if _, err := pgx.ForEachRow(rows, []any{&mid}, func() error { out[mid] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// issueCounts returns an issue's messages by status.
func issueCounts(t *testing.T, conn *pgx.Conn, issue int64) map[string]int {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT status, count(*) FROM messages WHERE issue_id = $1 GROUP BY status`, issue)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var (
		status string
		n      int
	)
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error { out[status] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// issueRun is one issue sent in the scale-out test.
type issueRun struct {
	issue   int64
	readers int
	elapsed time.Duration // from the API's answer to the last reader's message
	repeats int           // messages received more than once
}

func (r issueRun) rate() float64 { return float64(r.readers) / r.elapsed.Seconds() }

// sendIssue asks p for a daily issue now and waits until every reader has it.
func sendIssue(t *testing.T, p *process, relay *recordingSink, readers int) issueRun {
	t.Helper()
	return sendIssueWith(t, p, p, relay, readers, nil)
}

// sendIssueWith is sendIssue asking p for the issue and watching its
// progress through watch, calling during (if set) once the issue is queued.
func sendIssueWith(t *testing.T, p, watch *process, relay *recordingSink, readers int, during func(issue int64)) issueRun {
	t.Helper()
	code, body := p.api(t, http.MethodPost, "/api/v1/newsletters/daily/issues")
	if code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/newsletters/daily/issues: %d %s", code, body)
	}
	start := time.Now()
	var accepted struct{ ID int64 }
	if err := json.Unmarshal([]byte(body), &accepted); err != nil || accepted.ID == 0 {
		t.Fatalf("issue answer %q: %v", body, err)
	}
	if during != nil {
		during(accepted.ID)
	}
	last := relay.waitIssue(t, accepted.ID, readers, 5*time.Minute)
	// Give a late repeat, if any, time to show.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := watch.api(t, http.MethodGet, fmt.Sprintf("/api/v1/issues/%d", accepted.ID))
		var prog struct{ Total, Pending int }
		if err := json.Unmarshal([]byte(body), &prog); code == http.StatusOK && err == nil && prog.Total == readers && prog.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issue %d did not settle: %d %s", accepted.ID, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return issueRun{issue: accepted.ID, readers: readers, elapsed: last.Sub(start), repeats: relay.total(accepted.ID) - relay.distinct(accepted.ID)}
}

// process is one `herald serve` process.
type process struct {
	cmd    *exec.Cmd
	port   int
	base   string
	stderr *lockedBuffer
	done   chan error
}

// startProcess starts `herald serve` with the configuration file and env on
// a port of its own (its base URL, in every link it writes, names it), and
// waits until it is ready.
func startProcess(t *testing.T, bin, config string, env []string) *process {
	t.Helper()
	addr := freeAddr(t)
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	p := &process{port: port, base: "http://" + addr, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve", "--config", config)
	p.cmd.Env = append(append(os.Environ(), env...), "HERALD_HTTP_ADDR="+addr, "HERALD_HTTP_BASE_URL="+p.base)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("instance on port %d:\n%s", p.port, p.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("serve exited before answering: %v\n%s", err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become ready: %v\n%s", err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process at once, as a crash does: nothing is settled or
// released.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// stop asks the process to stop (SIGTERM) and returns its exit code.
func (p *process) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("instance on port %d did not stop within 30 s", p.port)
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.cmd.ProcessState.ExitCode()
}

// api sends an admin API request without a body.
func (p *process) api(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, p.base+path, nil)
	req.Header.Set("Authorization", "Bearer scale-out-token")
	resp, body := do(t, req)
	return resp.StatusCode, body
}

// postArticle stores an article for daily through the admin API.
func (p *process) postArticle(t *testing.T, slug, title string, published time.Time) {
	t.Helper()
	h := &heraldServer{base: p.base, token: "scale-out-token"}
	h.postArticle(t, slug, title, published)
}

// recordingSink is an SMTP server that records, for every message, its
// recipient, Message-ID and the instance that rendered it (the port of the
// base URL in its List-Unsubscribe), without keeping the bodies.
type recordingSink struct {
	mu       sync.Mutex
	byIssue  map[int64]map[string][]received // issue -> Message-ID -> copies
	arrived  chan struct{}
	problems []string
}

// received is one copy of a message.
type received struct {
	rcpt string
	port int
	at   time.Time
}

// digestMessageID matches a digest's Message-ID and captures its issue.
var digestMessageID = regexp.MustCompile(`^<herald\.digest\.(\d+)\.`)

// unsubscribePort captures the port of the base URL in List-Unsubscribe.
var unsubscribePort = regexp.MustCompile(`^<http://127\.0\.0\.1:(\d+)/unsubscribe/`)

func (s *recordingSink) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &recordingSession{s: s}, nil
}

type recordingSession struct {
	s  *recordingSink
	to []string
}

func (ss *recordingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *recordingSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}
func (ss *recordingSession) Reset()        { ss.to = nil }
func (ss *recordingSession) Logout() error { return nil }

// Data reads the headers, then the rest of the message (a message is only
// received once all of it is), and records it.
func (ss *recordingSession) Data(r io.Reader) error {
	br := bufio.NewReader(r)
	h, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	mid := h.Get("Message-Id")
	m := digestMessageID.FindStringSubmatch(mid)
	pm := unsubscribePort.FindStringSubmatch(h.Get("List-Unsubscribe"))
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if m == nil || pm == nil || len(ss.to) != 1 {
		s.problems = append(s.problems, fmt.Sprintf("unexpected message %q to %v (List-Unsubscribe %q)", mid, ss.to, h.Get("List-Unsubscribe")))
		return nil
	}
	issue, _ := strconv.ParseInt(m[1], 10, 64)
	port, _ := strconv.Atoi(pm[1])
	if s.byIssue[issue] == nil {
		s.byIssue[issue] = map[string][]received{}
	}
	copies := s.byIssue[issue][mid]
	if len(copies) > 0 && copies[0].rcpt != ss.to[0] {
		s.problems = append(s.problems, fmt.Sprintf("%s went to %s and to %s", mid, copies[0].rcpt, ss.to[0]))
	}
	s.byIssue[issue][mid] = append(copies, received{rcpt: ss.to[0], port: port, at: time.Now()})
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	return nil
}

// startRecordingSink runs a recordingSink on a loopback port.
func startRecordingSink(t *testing.T) (*recordingSink, int) {
	t.Helper()
	s := &recordingSink{byIssue: map[int64]map[string][]received{}, arrived: make(chan struct{}, 1)}
	srv := smtp.NewServer(s)
	srv.Domain = "relay.test"
	srv.MaxRecipients = 1
	// A killed instance's connections end mid-session; that is the test.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.problems {
			t.Error(p)
		}
	})
	return s, ln.Addr().(*net.TCPAddr).Port
}

// waitIssue waits until n distinct messages of issue arrived and returns
// when the last of them did.
func (s *recordingSink) waitIssue(t *testing.T, issue int64, n int, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		got := len(s.byIssue[issue])
		var last time.Time
		if got >= n {
			for _, copies := range s.byIssue[issue] {
				if copies[0].at.After(last) {
					last = copies[0].at
				}
			}
		}
		s.mu.Unlock()
		if got >= n {
			return last
		}
		select {
		case <-s.arrived:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("issue %d: %d of %d messages arrived within %s", issue, got, n, timeout)
		}
	}
}

// distinct counts an issue's distinct Message-IDs; total counts every copy.
func (s *recordingSink) distinct(issue int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byIssue[issue])
}

// recipients counts the distinct recipients of an issue.
func (s *recordingSink) recipients(issue int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, copies := range s.byIssue[issue] {
		seen[copies[0].rcpt] = true
	}
	return len(seen)
}

func (s *recordingSink) total(issue int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, copies := range s.byIssue[issue] {
		n += len(copies)
	}
	return n
}

// countFrom counts the messages of issue the instance on port rendered.
func (s *recordingSink) countFrom(issue int64, port int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, copies := range s.byIssue[issue] {
		for _, c := range copies {
			if c.port == port {
				n++
			}
		}
	}
	return n
}

// repeated returns the messages of issue received more than once.
func (s *recordingSink) repeated(issue int64) map[string][]received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]received{}
	for mid, copies := range s.byIssue[issue] {
		if len(copies) > 1 {
			out[mid] = append([]received(nil), copies...)
		}
	}
	return out
}
