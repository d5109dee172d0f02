package delivery

import (
	"context"
	"errors"
	"sync"
	"testing"

	"herald/mailer"
)

// preparingRenderer is a BatchPreparer: PrepareBatch marks the jobs of each
// claimed batch (or fails, or panics), and Render cancels the jobs its
// batch marked as unwanted and records what it was handed.
type preparingRenderer struct {
	fakeRenderer
	unwanted map[int64]bool // by job id: PrepareBatch marks these
	mode     string         // "", "fail" or "panic"

	mu       sync.Mutex
	batches  int
	prepared map[int64]any // Job.Prepared as Render received it
}

func (r *preparingRenderer) PrepareBatch(ctx context.Context, jobs []Job) error {
	r.mu.Lock()
	r.batches++
	r.mu.Unlock()
	switch r.mode {
	case "fail":
		return errors.New("suppression list unavailable")
	case "panic":
		panic("boom")
	}
	for i := range jobs {
		jobs[i].Prepared = r.unwanted[jobs[i].ID]
	}
	return nil
}

func (r *preparingRenderer) Render(ctx context.Context, j Job) (*mailer.Email, error) {
	r.mu.Lock()
	r.prepared[j.ID] = j.Prepared
	r.mu.Unlock()
	if unwanted, _ := j.Prepared.(bool); unwanted {
		return nil, ErrCancel
	}
	return r.fakeRenderer.Render(ctx, j)
}

// The engine hands each claimed batch to a BatchPreparer before its jobs
// go out, and Render gets what PrepareBatch set on each job; a failing or
// panicking PrepareBatch leaves the batch unprepared and delivered.
func TestRunPreparesBatches(t *testing.T) {
	for _, mode := range []string{"", "fail", "panic"} {
		t.Run("mode="+mode, func(t *testing.T) {
			h := newHarness()
			h.cfg.BatchSize = 3
			const n = 7
			for range n {
				h.store.add("digest")
			}
			r := &preparingRenderer{unwanted: map[int64]bool{2: true, 6: true}, mode: mode, prepared: map[int64]any{}}
			e := New(h.store, r, h.transport, h.cfg)
			stop := start(t, e)
			eventually(t, "every message settled", func() bool {
				for _, s := range h.store.statuses() {
					if s == "queued" || s == "sending" {
						return false
					}
				}
				return true
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.batches < (n+h.cfg.BatchSize-1)/h.cfg.BatchSize {
				t.Errorf("PrepareBatch called %d times for %d messages in batches of %d", r.batches, n, h.cfg.BatchSize)
			}
			for id := int64(1); id <= n; id++ {
				status := h.store.row(id).Status
				want := "sent"
				if mode == "" && (id == 2 || id == 6) {
					want = "cancelled"
				}
				if status != want {
					t.Errorf("message %d: %s, want %s", id, status, want)
				}
				if p, ok := r.prepared[id]; mode == "" && (!ok || p != (id == 2 || id == 6)) || mode != "" && p != nil {
					t.Errorf("message %d rendered with Prepared %v", id, p)
				}
			}
		})
	}
}
