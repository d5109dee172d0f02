package chaos

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/internal/faultsmtp"
)

// TestRelayFaults is issue 4's fault test: `herald digest send` delivers an
// issue through a relay that answers 4xx at MAIL, RCPT and DATA at random,
// drops connections in the middle of DATA (losing the message), sometimes
// keeps a message and hangs up before its 250, replies slowly, and refuses
// some readers with 550 5.1.1. With delivery.retry_base at 50ms the retries
// come quickly. Afterwards:
//
//   - the command exits 0 and its summary counts every reader;
//   - every reader who was not refused received the issue once, apart from
//     the repeats of messages kept without a 250 (at most one each), with
//     the same Message-ID;
//   - the refused readers received nothing, their rows are bounced and they
//     are suppressed (status bounced); nobody else is;
//   - every row is settled, and the rows sent are exactly the recipients the
//     relay received.
//
// HERALD_FAULTTEST_SEED replays a run; HERALD_FAULTTEST_READERS (400) sizes
// it.
func TestRelayFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs herald: not with -short")
	}
	readers := envInt(t, "HERALD_FAULTTEST_READERS", 400)
	sd := seed(t, "HERALD_FAULTTEST_SEED")
	// Every 25th reader does not exist at the relay.
	refused := func(rcpt string) bool {
		var n int
		_, err := fmt.Sscanf(rcpt, "reader%06d@example.org", &n)
		return err == nil && n%25 == 7
	}
	relay, err := faultsmtp.Start(faultsmtp.Config{Seed: sd, Faults: faultsmtp.Faults{
		MailTempFail:    0.04,
		RcptTempFail:    0.04,
		DataTempFail:    0.04,
		DropMidData:     0.04,
		DropAfterAccept: 0.01,
		MaxReplyDelay:   5 * time.Millisecond,
		Bounce:          refused,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	s := newSite(t, siteOptions{
		smtpPort:    relay.Port(),
		connections: 4,
		batchSize:   50,
		lease:       10 * time.Second,
		retryBase:   50 * time.Millisecond,
		retryMax:    time.Second,
	}, readers)

	var want, bounced []string
	for _, r := range s.readers {
		if refused(r) {
			bounced = append(bounced, r)
		} else {
			want = append(want, r)
		}
	}

	began := time.Now()
	var stdout bytes.Buffer
	c := s.start(t, &stdout, "digest", "send", "daily")
	select {
	case <-c.done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("herald digest send did not finish within 3 minutes\n%s", s.logTail(t))
	}
	elapsed := time.Since(began)
	if c.err != nil {
		t.Fatalf("herald digest send: %v\nstdout: %s\n%s", c.err, stdout.String(), s.logTail(t))
	}
	m := regexp.MustCompile(`(?m)^issue (\d+): sent (\d+), failed 0, bounced (\d+), cancelled 0$`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("summary %q, want issue N: sent %d, failed 0, bounced %d, cancelled 0", stdout.String(), len(want), len(bounced))
	}
	issue, _ := strconv.ParseInt(m[1], 10, 64)
	if m[2] != strconv.Itoa(len(want)) || m[3] != strconv.Itoa(len(bounced)) {
		t.Errorf("summary %q, want sent %d, bounced %d", strings.TrimSpace(stdout.String()), len(want), len(bounced))
	}

	db := s.openDB(t)
	tally := agree(t, db, relay, issue, want)
	st := relay.Stats()
	if tally.Repeats > st.Unacknowledged {
		t.Errorf("%d repeats, but only %d messages were kept without a 250: %s",
			tally.Repeats, st.Unacknowledged, strings.Join(repeated(tally), ", "))
	}

	rows := issueRows(t, db, issue)
	retried := 0
	for _, r := range rows {
		if r.attempts > 1 {
			retried++
		}
		switch {
		case refused(r.email) && (r.status != "bounced" || r.subscriberStatus != "bounced"):
			t.Errorf("%s was refused with 5.1.1: row %s, reader %s; want both bounced", r.email, r.status, r.subscriberStatus)
		case !refused(r.email) && r.subscriberStatus != "active":
			t.Errorf("%s is %s, want active", r.email, r.subscriberStatus)
		}
	}
	if len(rows) != readers {
		t.Errorf("%d rows for %d readers", len(rows), readers)
	}

	// Each kind of fault happened (at these rates, missing one would
	// take a one-in-millions draw), and messages were retried.
	for name, n := range map[string]int{
		"4xx at MAIL": st.MailTempFails, "4xx at RCPT": st.RcptTempFails, "4xx at DATA": st.DataTempFails,
		"drops mid-DATA": st.DropsMidData, "5.1.1 at RCPT": st.Bounces,
	} {
		if n == 0 {
			t.Errorf("no %s was injected", name)
		}
	}
	if retried == 0 {
		t.Error("no message needed a second attempt")
	}
	t.Logf("FAULTTEST readers=%d sent=%d bounced=%d retried_rows=%d mail4xx=%d rcpt4xx=%d data4xx=%d drops_mid_data=%d kept_without_250=%d repeats=%d sessions=%d elapsed=%s seed=%d",
		readers, len(tally.Received), len(bounced), retried, st.MailTempFails, st.RcptTempFails, st.DataTempFails,
		st.DropsMidData, st.Unacknowledged, tally.Repeats, st.Sessions, elapsed.Round(100*time.Millisecond), sd)
}
