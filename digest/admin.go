package digest

import (
	"context"
	"fmt"
	"time"

	"herald"
)

// FailedResender is a Store that can queue an issue's failed messages
// again. It is a separate interface so that an engine gains it without
// every Store having to.
type FailedResender interface {
	// RequeueFailed sets the issue's failed messages back to queued, due
	// at now, with their attempts reset, and an issue that was sent back
	// to sending; it returns how many messages it queued.
	RequeueFailed(ctx context.Context, issueID int64, now time.Time) (int, error)
}

// ResendFailed queues an issue's failed messages again (bounced ones stay
// settled: their addresses are suppressed) and returns how many. Each is
// rendered afresh when claimed, so a reader who left since is cancelled
// then. ENOTFOUND for an unknown issue, ECONFLICT while the issue is still
// being built, EUNAVAILABLE when the store cannot requeue.
func (s *Service) ResendFailed(ctx context.Context, issueID int64) (int, error) {
	r, ok := s.store.(FailedResender)
	if !ok {
		return 0, herald.Errorf(herald.EUNAVAILABLE, "Re-sending failed messages is not available on this database engine.")
	}
	iss, err := s.Issue(ctx, issueID)
	if err != nil {
		return 0, err
	}
	if iss.Status == IssueBuilding {
		return 0, herald.Errorf(herald.ECONFLICT, "Issue %d is still being built: wait until every message is queued.", issueID)
	}
	n, err := r.RequeueFailed(ctx, issueID, s.now())
	if err != nil {
		return 0, fmt.Errorf("resend failed messages of issue %d: %w", issueID, err)
	}
	if n > 0 {
		s.opts.Logger.InfoContext(ctx, "failed messages queued again", "issue_id", issueID, "messages", n)
	}
	return n, nil
}

// Expr returns the schedule's cron expression, without its time zone.
func (s *Schedule) Expr() string { return s.expr }
