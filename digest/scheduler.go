package digest

import (
	"context"
	"log/slog"
	"time"
)

// DefaultInterval is how often a Scheduler looks for due work.
const DefaultInterval = 30 * time.Second

// Scheduler runs the Service's scheduler passes (RunDue) on a ticker.
type Scheduler struct {
	// Service does the work.
	Service *Service
	// Interval between passes (default DefaultInterval). The first pass
	// runs at once, so that a restart catches up without waiting.
	Interval time.Duration
	// Leader, when set, is asked before each pass whether this instance may
	// run it (e.g. a PostgreSQL advisory lock); release is called after the
	// pass. Nil means always: SQLite has one instance.
	Leader func(ctx context.Context) (release func(), ok bool, err error)
	// Logger receives errors of passes (default: discard).
	Logger *slog.Logger
}

// Run makes a pass now and then every Interval until ctx ends, when it
// returns nil. A failed pass is logged and the next one runs as usual.
func (s *Scheduler) Run(ctx context.Context) error {
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.pass(ctx, log)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pass runs RunDue once, when this instance leads.
func (s *Scheduler) pass(ctx context.Context, log *slog.Logger) {
	if s.Leader != nil {
		release, ok, err := s.Leader(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("digest scheduler: leader election failed", "err", err)
			}
			return
		}
		if !ok {
			return
		}
		if release != nil {
			defer release()
		}
	}
	if err := s.Service.RunDue(ctx); err != nil && ctx.Err() == nil {
		log.Error("digest scheduler pass failed", "err", err)
	}
}
