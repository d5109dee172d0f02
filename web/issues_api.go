package web

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/digest"
)

// issueAccepted is the answer to POST /api/v1/newsletters/{id}/issues.
type issueAccepted struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
	URL    string `json:"url"` // where its progress is read
}

// issueJSON is one issue and its delivery progress, as GET
// /api/v1/issues/{id} shows it. Failed counts failed messages only;
// bounced ones are in Bounced.
type issueJSON struct {
	ID          int64   `json:"id"`
	Newsletter  string  `json:"newsletter"`
	Status      string  `json:"status"`
	Subject     string  `json:"subject"`
	Total       int     `json:"total"`
	Sent        int     `json:"sent"`
	Failed      int     `json:"failed"`
	Pending     int     `json:"pending"`
	Bounced     int     `json:"bounced"`
	Cancelled   int     `json:"cancelled"`
	CreatedAt   string  `json:"created_at"`
	CompletedAt *string `json:"completed_at"`
}

// handleSendIssue builds an issue of the newsletter now and enqueues it:
// 202 with the issue's id and where to follow it; 404 for an unknown
// newsletter, 409 when nobody has anything new.
func (s *Server) handleSendIssue(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("digest service")
	}
	id := c.Param("id")
	if id == "" || len(id) > 64 || hasControl(id) {
		return herald.Errorf(herald.ENOTFOUND, "There is no newsletter with that id.")
	}
	iss, err := s.digests.StartNow(c.Request().Context(), id)
	if err != nil {
		return fmt.Errorf("send newsletter %q now: %w", id, err)
	}
	s.callWake()
	link := s.prefix + "/api/v1/issues/" + strconv.FormatInt(iss.ID, 10)
	c.Response().Header().Set(echo.HeaderLocation, link)
	return c.JSON(http.StatusAccepted, issueAccepted{ID: iss.ID, Status: string(iss.Status), URL: link})
}

// handleGetIssue shows an issue and how far its delivery has come: sent as
// soon as nothing is left to send, not only after the scheduler's next
// pass.
func (s *Server) handleGetIssue(c echo.Context) error {
	if s.digests == nil {
		return notConfigured("digest service")
	}
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return herald.Errorf(herald.EBADREQUEST, "The issue id must be a whole number from 1 up.")
	}
	ctx := c.Request().Context()
	iss, err := s.digests.Issue(ctx, id)
	if err != nil {
		return fmt.Errorf("get issue %d: %w", id, err)
	}
	iss, p, err := s.digests.Follow(ctx, iss)
	if err != nil {
		return fmt.Errorf("progress of issue %d: %w", id, err)
	}
	return c.JSON(http.StatusOK, issueToJSON(iss, p))
}

// positiveID parses a decimal id of 1 or more.
func positiveID(s string) (int64, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false // no sign, no space
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

func issueToJSON(iss *digest.Issue, p digest.Progress) issueJSON {
	out := issueJSON{
		ID:         iss.ID,
		Newsletter: iss.NewsletterID,
		Status:     string(iss.Status),
		Subject:    iss.Subject,
		Total:      p.Total,
		Sent:       p.Sent,
		Failed:     p.Failed,
		Pending:    p.Pending(),
		Bounced:    p.Bounced,
		Cancelled:  p.Cancelled,
		CreatedAt:  iss.CreatedAt.UTC().Format(time.RFC3339),
	}
	if !iss.CompletedAt.IsZero() {
		at := iss.CompletedAt.UTC().Format(time.RFC3339)
		out.CompletedAt = &at
	}
	return out
}
