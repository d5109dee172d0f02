package delivery

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/mailer"
)

// durabilityProbe is a transport that, after every accepted message, counts
// the messages the relay has accepted that the store does not yet record as
// sent: the messages a crash at that instant would send again.
type durabilityProbe struct {
	*fakeTransport
	store *fakeStore

	mu       sync.Mutex
	accepted int
	worst    int // the most accepted-but-unrecorded messages seen at once
}

func (p *durabilityProbe) Send(ctx context.Context, e *mailer.Email) error {
	if err := p.fakeTransport.Send(ctx, e); err != nil {
		return err
	}
	// Both counts under one lock: a message is counted accepted before
	// its result can reach the store, so the difference is exact.
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted++
	sent := 0
	for _, s := range p.store.statuses() {
		if s == "sent" {
			sent++
		}
	}
	p.worst = max(p.worst, p.accepted-sent)
	return nil
}

// TestRunSentIsDurableBeforeNextSend: a worker does not start another
// message until the one the relay accepted is recorded as sent, so a crash
// at any instant can repeat at most one message per worker, however large
// the batches and however rare the timed settles (the kill test in chaos/
// found up to a whole SettleEvery's worth of repeats per kill).
func TestRunSentIsDurableBeforeNextSend(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 4
	h.cfg.BatchSize = 100
	h.cfg.SettleEvery = time.Hour // only full batches and durability flush
	const n = 300
	for range n {
		h.store.add("digest")
	}
	probe := &durabilityProbe{fakeTransport: h.transport, store: h.store}
	e := New(h.store, h.renderer, probe, h.cfg)
	start(t, e)

	waitAllSent(t, h.store)
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if probe.accepted != n {
		t.Errorf("the relay accepted %d messages, want %d", probe.accepted, n)
	}
	if probe.worst > h.cfg.Workers {
		t.Errorf("up to %d accepted messages were not yet recorded as sent, want at most %d (one per worker)", probe.worst, h.cfg.Workers)
	}
}

// TestRunFailingStoreHoldsSends: while results cannot be recorded, a worker
// whose message was accepted sends nothing more; once the store recovers,
// delivery resumes, and nothing was sent twice.
func TestRunFailingStoreHoldsSends(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 1
	h.cfg.SettleEvery = 50 * time.Millisecond
	h.store.settleErrs = 3
	a := h.store.add("digest")
	b := h.store.add("digest")
	probe := &durabilityProbe{fakeTransport: h.transport, store: h.store}
	start(t, New(h.store, h.renderer, probe, h.cfg))

	eventually(t, "both sent", func() bool {
		return h.store.row(a).Status == "sent" && h.store.row(b).Status == "sent"
	})
	probe.mu.Lock()
	if probe.worst > 1 {
		t.Errorf("%d messages were accepted and unrecorded at once, want at most 1", probe.worst)
	}
	probe.mu.Unlock()
	if h.transport.deliveries(a) != 1 || h.transport.deliveries(b) != 1 {
		t.Errorf("deliveries = %d, %d; want 1, 1", h.transport.deliveries(a), h.transport.deliveries(b))
	}
	if lines := h.logs.matching("settle messages", "database is locked"); len(lines) != 3 {
		t.Errorf("settle failures logged %d times, want 3", len(lines))
	}
}

// TestRunRefusedResultDoesNotStall: a result the store refuses for good
// fails every settle it is part of; after a few failures in a row the
// results are settled one at a time, the refused one is dropped (its lease
// expires and it is claimed again), and the others are recorded, so the
// workers waiting for them go on.
func TestRunRefusedResultDoesNotStall(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 4
	h.cfg.BatchSize = 10
	const n = 30
	for range n {
		h.store.add("digest")
	}
	h.store.refuse = map[int64]bool{5: true}
	e := New(h.store, h.renderer, h.transport, h.cfg)
	stop := start(t, e)
	eventually(t, "every other message recorded as sent", func() bool {
		for i, s := range h.store.statuses() {
			if i != 4 && s != "sent" {
				return false
			}
		}
		return true
	})
	if err := stop(); err != nil {
		t.Errorf("Run = %v; the refused result was dropped, nothing is left to settle", err)
	}
	if s := h.store.row(5).Status; s != "sending" {
		t.Errorf("the refused message is %s, want still sending (its lease will expire)", s)
	}
	if lines := h.logs.matching("settle message refused alone", "job_id=5 "); len(lines) == 0 {
		t.Error("no error logged for the refused result")
	}
}

// gatingProbe is a durabilityProbe whose transport honours a DataGate as
// SMTPTransport does: the relay takes a message only once its gate opens.
type gatingProbe struct {
	*durabilityProbe
	early atomic.Int64 // sends that began before their gate was open
}

func (p *gatingProbe) GatesData() bool { return true }

func (p *gatingProbe) Send(ctx context.Context, e *mailer.Email) error {
	if g := mailer.DataGateFrom(ctx); g != nil {
		select {
		case <-g.Ready:
		default:
			p.early.Add(1)
			if g.Waiting != nil {
				g.Waiting()
			}
			select {
			case <-g.Ready:
			case <-ctx.Done():
				return &mailer.SendError{Stage: mailer.StageData, Err: ctx.Err()}
			}
		}
	}
	return p.durabilityProbe.Send(ctx, e)
}

// TestRunGatedSendsKeepDurability: with a transport that honours a
// DataGate, a worker starts its next message while the last one's settle
// commits, yet the relay takes it only after that settle: still at most
// one accepted-but-unrecorded message per worker.
func TestRunGatedSendsKeepDurability(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 8
	h.cfg.BatchSize = 100
	h.cfg.SettleEvery = time.Hour
	h.cfg.SettleLinger = 20 * time.Millisecond
	const n = 300
	for range n {
		h.store.add("digest")
	}
	probe := &gatingProbe{durabilityProbe: &durabilityProbe{fakeTransport: h.transport, store: h.store}}
	e := New(h.store, h.renderer, probe, h.cfg)
	start(t, e)
	waitAllSent(t, h.store)
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if probe.accepted != n {
		t.Errorf("the relay accepted %d messages, want %d", probe.accepted, n)
	}
	if probe.worst > h.cfg.Workers {
		t.Errorf("up to %d accepted messages were not yet recorded as sent, want at most %d (one per worker)", probe.worst, h.cfg.Workers)
	}
	if probe.early.Load() == 0 {
		t.Error("no send began before the last one's settle: the gate was never used")
	}
}

// settleTimes is a store that notes when each settle began.
type settleTimes struct {
	*fakeStore
	mu sync.Mutex
	at []time.Time
}

func (s *settleTimes) SettleMessages(ctx context.Context, owner string, results []Result) error {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	return s.fakeStore.SettleMessages(ctx, owner, results)
}

// TestRunSpacesEarlyCommits: when every send waits at its gate (as a
// chaining worker's does), the commits the workers ask for are spaced by a
// tenth of SettleLinger, so that more results share each; they are not
// made back to back, one or two results at a time.
func TestRunSpacesEarlyCommits(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 8
	h.cfg.BatchSize = 500
	h.cfg.SettleEvery = time.Hour
	h.cfg.SettleLinger = 20 * time.Millisecond
	const n = 200
	for range n {
		h.store.add("digest")
	}
	store := &settleTimes{fakeStore: h.store}
	probe := &gatingProbe{durabilityProbe: &durabilityProbe{fakeTransport: h.transport, store: h.store}}
	e := New(store, h.renderer, probe, h.cfg)
	start(t, e)
	waitAllSent(t, h.store)
	store.mu.Lock()
	defer store.mu.Unlock()
	gap := h.cfg.SettleLinger / 10
	for i := 1; i < len(store.at); i++ {
		if d := store.at[i].Sub(store.at[i-1]); d < gap {
			t.Fatalf("settle %d began %v after the one before, want at least %v", i, d, gap)
		}
	}
	if len(store.at) > n/4 {
		t.Errorf("%d settles for %d messages: results did not share commits", len(store.at), n)
	}
	if probe.early.Load() == 0 {
		t.Error("no send waited at its gate")
	}
}

// waitAllSent waits until every message in store is sent.
func waitAllSent(t *testing.T, store *fakeStore) {
	t.Helper()
	eventually(t, "every message sent", func() bool {
		for _, s := range store.statuses() {
			if s != "sent" {
				return false
			}
		}
		return true
	})
}
