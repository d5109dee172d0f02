package web

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/subscribers"
)

// Paging of GET /api/v1/subscribers.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// requireAdmin lets a request through only with a valid admin token whose
// scope allows it: the configured admin.token, or a stored token (see
// requireToken). With neither configured the API is closed.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return s.requireToken(next)
}

// subscriberJSON is one subscriber as the admin API shows it.
type subscriberJSON struct {
	ID          int64    `json:"id"`
	Email       string   `json:"email"`
	Name        string   `json:"name"`
	Status      string   `json:"status"`
	Newsletters []string `json:"newsletters"`
	CreatedAt   string   `json:"created_at"`
	ConfirmedAt *string  `json:"confirmed_at"`
}

// subscriberPage is one page of GET /api/v1/subscribers.
type subscriberPage struct {
	Items      []subscriberJSON `json:"items"`
	NextCursor string           `json:"next_cursor"`
}

// handleListSubscribers searches and pages subscribers: q (prefix of the
// address or name), status, newsletter, cursor (opaque, from next_cursor),
// limit.
func (s *Server) handleListSubscribers(c echo.Context) error {
	f, err := subscriberFilter(c)
	if err != nil {
		return err
	}
	limit := f.Limit
	f.Limit++ // one more than asked tells whether there is a next page
	subs, err := s.subs.FindSubscribers(c.Request().Context(), f)
	if err != nil {
		return err
	}
	page := subscriberPage{Items: make([]subscriberJSON, 0, min(len(subs), limit))}
	if len(subs) > limit {
		subs = subs[:limit]
		page.NextCursor = encodeCursor(subs[limit-1].ID)
	}
	for _, sub := range subs {
		page.Items = append(page.Items, toJSON(sub))
	}
	return c.JSON(http.StatusOK, page)
}

func subscriberFilter(c echo.Context) (subscribers.Filter, error) {
	f := subscribers.Filter{Limit: defaultPageSize}
	q := c.QueryParam("q")
	if hasControl(q) {
		return f, herald.Errorf(herald.EINVALID, "q must not contain control characters.")
	}
	if len(q) > subscribers.MaxAddressLength {
		return f, herald.Errorf(herald.EINVALID, "q is longer than %d characters.", subscribers.MaxAddressLength)
	}
	f.Query = strings.TrimSpace(q)
	if st := c.QueryParam("status"); st != "" {
		f.Status = subscribers.Status(st)
		if !f.Status.Valid() {
			return f, herald.Errorf(herald.EINVALID, "status must be one of pending, active, unsubscribed, bounced, complained.")
		}
	}
	if n := c.QueryParam("newsletter"); n != "" {
		if len(n) > 64 || hasControl(n) {
			return f, herald.Errorf(herald.EINVALID, "newsletter must be a newsletter id.")
		}
		f.Newsletter = n
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPageSize {
			return f, herald.Errorf(herald.EINVALID, "limit must be a whole number from 1 to %d.", maxPageSize)
		}
		f.Limit = n
	}
	if cur := c.QueryParam("cursor"); cur != "" {
		id, ok := decodeCursor(cur)
		if !ok {
			return f, herald.Errorf(herald.EBADREQUEST, "cursor is malformed: pass back the next_cursor of the previous page.")
		}
		f.AfterID = id
	}
	return f, nil
}

// encodeCursor makes the opaque cursor that follows id: base64url of its
// decimal form.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

func decodeCursor(s string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || id < 1 {
		return 0, false
	}
	return id, true
}

func toJSON(sub *subscribers.Subscriber) subscriberJSON {
	out := subscriberJSON{
		ID:          sub.ID,
		Email:       sub.Email,
		Name:        sub.Name,
		Status:      string(sub.Status),
		Newsletters: sub.Newsletters,
		CreatedAt:   sub.CreatedAt.UTC().Format(time.RFC3339),
	}
	if out.Newsletters == nil {
		out.Newsletters = []string{}
	}
	if !sub.ConfirmedAt.IsZero() {
		at := sub.ConfirmedAt.UTC().Format(time.RFC3339)
		out.ConfirmedAt = &at
	}
	return out
}
