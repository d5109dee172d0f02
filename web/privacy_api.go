package web

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/subscribers"
)

// Privacy is what the privacy routes (export, erase, the suppression list,
// and the reader's own data requests) ask of the subscribers service. The
// Deps.Subscribers given to New provides it when it implements it, as
// *subscribers.Service does; otherwise those routes answer 503.
type Privacy interface {
	// ExportSubscriber returns everything held about one subscriber:
	// ENOTFOUND for an unknown id.
	ExportSubscriber(ctx context.Context, id int64) (*subscribers.Dossier, error)
	// Erase deletes a subscriber's personal data and suppresses their
	// address: ENOTFOUND for an unknown id.
	Erase(ctx context.Context, id int64, source string) error
	// Suppress adds an address to the suppression list and reports whether
	// it was added (false: it was listed already, and the entry is the
	// first one): EINVALID for a bad address or reason.
	Suppress(ctx context.Context, email, reason string) (subscribers.Suppression, bool, error)
	// Unsuppress takes an address off the list: ENOTFOUND when it is not on
	// it, EINVALID for a bad address.
	Unsuppress(ctx context.Context, email string) error
	// UnsuppressHash takes the entry with that hash off the list:
	// ENOTFOUND when there is none, EINVALID for a malformed hash.
	UnsuppressHash(ctx context.Context, hash []byte) error
	// Suppressions returns up to limit entries with hashes after afterHash,
	// in hash order.
	Suppressions(ctx context.Context, afterHash []byte, limit int) ([]subscribers.Suppression, error)
	// RequestDataExport queues the email with a reader's data export link:
	// ERATELIMIT within an hour of the last one, ECONFLICT when the
	// address cannot be emailed; ENOTFOUND and EGONE for a bad token.
	RequestDataExport(ctx context.Context, preferencesToken string) error
	// CheckDataExportToken changes nothing: ENOTFOUND for an unknown
	// token, EGONE for one used or expired.
	CheckDataExportToken(ctx context.Context, token string) (*subscribers.Subscriber, error)
	// DownloadDataExport spends the token and returns the reader's data;
	// errors as CheckDataExportToken.
	DownloadDataExport(ctx context.Context, token string) (*subscribers.Dossier, error)
	// EraseByToken erases the reader a preferences token names; ENOTFOUND
	// and EGONE for a bad token.
	EraseByToken(ctx context.Context, preferencesToken string) error
}

// privacy returns the Privacy side of the subscribers service, or
// EUNAVAILABLE.
func (s *Server) privacy() (Privacy, error) {
	p, ok := s.subs.(Privacy)
	if !ok {
		return nil, herald.Errorf(herald.EUNAVAILABLE, "Data export, erasure and the suppression list are not available on this server.")
	}
	return p, nil
}

// subscriberID reads the :id path parameter.
func subscriberID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, herald.Errorf(herald.ENOTFOUND, "No subscriber has the id %q.", clipRunes(c.Param("id"), 40))
	}
	return id, nil
}

// handleExportSubscriber answers everything Herald holds about one
// subscriber as a JSON attachment.
func (s *Server) handleExportSubscriber(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	id, err := subscriberID(c)
	if err != nil {
		return err
	}
	d, err := p.ExportSubscriber(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return s.writeDossier(c, d, fmt.Sprintf("subscriber-%d-%s.json", id, d.ExportedAt.UTC().Format("2006-01-02")))
}

// writeDossier writes d as an indented JSON attachment, encoded straight
// into the response: a long delivery history is never held twice.
func (s *Server) writeDossier(c echo.Context, d *subscribers.Dossier, filename string) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentDisposition, mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	c.Response().WriteHeader(http.StatusOK)
	enc := json.NewEncoder(c.Response())
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		// The status is sent; all that is left is to say so in the log.
		s.log.ErrorContext(c.Request().Context(), "write data export", "subscriber_id", d.Subscriber.ID,
			"error", err.Error(), "request_id", requestID(c))
	}
	return nil
}

// handleEraseSubscriber erases one subscriber: 204, 404 for an unknown id.
func (s *Server) handleEraseSubscriber(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	id, err := subscriberID(c)
	if err != nil {
		return err
	}
	if err := p.Erase(c.Request().Context(), id, "admin"); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// suppressionJSON is one suppression list entry as the admin API shows it:
// never an address.
type suppressionJSON struct {
	Hash      string `json:"hash"`
	Reason    string `json:"reason"`
	CreatedAt string `json:"created_at"`
}

// suppressionPage is one page of GET /api/v1/suppressions.
type suppressionPage struct {
	Items      []suppressionJSON `json:"items"`
	NextCursor string            `json:"next_cursor"`
}

func toSuppressionJSON(e subscribers.Suppression) suppressionJSON {
	return suppressionJSON{Hash: hex.EncodeToString(e.Hash), Reason: e.Reason, CreatedAt: e.CreatedAt.UTC().Format(time.RFC3339)}
}

// handleListSuppressions pages the suppression list in hash order: cursor
// (the next_cursor of the previous page) and limit (1-500, default 50).
func (s *Server) handleListSuppressions(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	limit := defaultPageSize
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPageSize {
			return herald.Errorf(herald.EINVALID, "limit must be a whole number from 1 to %d.", maxPageSize)
		}
		limit = n
	}
	var after []byte
	if cur := c.QueryParam("cursor"); cur != "" {
		if after, err = hex.DecodeString(cur); err != nil || len(after) == 0 || len(after) > 64 {
			return herald.Errorf(herald.EBADREQUEST, "cursor is malformed: pass back the next_cursor of the previous page.")
		}
	}
	list, err := p.Suppressions(c.Request().Context(), after, limit+1)
	if err != nil {
		return err
	}
	page := suppressionPage{Items: make([]suppressionJSON, 0, min(len(list), limit))}
	if len(list) > limit {
		list = list[:limit]
		page.NextCursor = hex.EncodeToString(list[limit-1].Hash)
	}
	for _, e := range list {
		page.Items = append(page.Items, toSuppressionJSON(e))
	}
	return c.JSON(http.StatusOK, page)
}

// suppressionInput is the body of POST and DELETE /api/v1/suppressions.
type suppressionInput struct {
	Email  string `json:"email"`
	Reason string `json:"reason"`
	Hash   string `json:"hash"` // DELETE only: the entry as the list shows it
}

// readSuppressionInput reads the JSON body.
func readSuppressionInput(c echo.Context) (suppressionInput, error) {
	var in suppressionInput
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return in, herald.Errorf(herald.EUNSUPPORTED, "Send a JSON body with Content-Type: application/json.")
		}
	}
	dec := json.NewDecoder(c.Request().Body)
	if err := dec.Decode(&in); err != nil {
		return in, readError(c, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return in, readError(c, herald.Errorf(herald.EBADREQUEST, "The request body must hold one JSON object and nothing after it."))
	}
	return in, nil
}

// handleAddSuppression puts an address on the suppression list: 201 with
// the entry, or 200 with the existing entry when it was listed already.
func (s *Server) handleAddSuppression(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	in, err := readSuppressionInput(c)
	if err != nil {
		return err
	}
	if strings.TrimSpace(in.Email) == "" {
		return herald.Errorf(herald.EINVALID, "email is required.")
	}
	e, added, err := p.Suppress(c.Request().Context(), in.Email, in.Reason)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if added {
		status = http.StatusCreated
	}
	return c.JSON(status, toSuppressionJSON(e))
}

// handleRemoveSuppression takes an address ({"email"}) or an entry
// ({"hash"}) off the suppression list: 204, or 404 when it is not listed.
func (s *Server) handleRemoveSuppression(c echo.Context) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	in, err := readSuppressionInput(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	switch email, hash := strings.TrimSpace(in.Email), strings.TrimSpace(in.Hash); {
	case email != "" && hash != "":
		return herald.Errorf(herald.EINVALID, "Send either email or hash, not both.")
	case email != "":
		err = p.Unsuppress(ctx, email)
	case hash != "":
		h, derr := hex.DecodeString(hash)
		if derr != nil {
			return herald.Errorf(herald.EINVALID, "hash must be hexadecimal, as GET /api/v1/suppressions shows it.")
		}
		err = p.UnsuppressHash(ctx, h)
	default:
		return herald.Errorf(herald.EINVALID, "email (or hash) is required.")
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
