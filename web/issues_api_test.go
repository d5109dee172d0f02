package web

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"herald/digest"
)

func TestSendIssue(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, http.MethodPost, "/api/v1/newsletters/daily/issues", "", nil, "Authorization", bearer)
	wantStatus(t, rec, http.StatusAccepted)
	wantHeader(t, rec, "Location", "/api/v1/issues/101")
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["id"] != float64(101) || got["status"] != "sending" || got["url"] != "/api/v1/issues/101" {
		t.Errorf("body = %s", rec.Body.String())
	}
	if len(h.digs.sent) != 1 || h.digs.sent[0] != "daily" {
		t.Errorf("SendNow got %v", h.digs.sent)
	}
	if h.wakeCount() != 1 {
		t.Errorf("wakes = %d, want 1", h.wakeCount())
	}

	rec = h.do(t, http.MethodPost, "/api/v1/newsletters/monthly/issues", "", nil, "Authorization", bearer)
	wantAPIError(t, rec, http.StatusNotFound, "not_found", "monthly")

	h.digs.nothingNew = true
	rec = h.do(t, http.MethodPost, "/api/v1/newsletters/daily/issues", "", nil, "Authorization", bearer)
	wantAPIError(t, rec, http.StatusConflict, "conflict", "Nothing new to send")
	if h.wakeCount() != 1 {
		t.Errorf("wakes = %d after failures, want 1", h.wakeCount())
	}

	rec = h.do(t, http.MethodPost, "/api/v1/newsletters/daily/issues", "", nil)
	wantAPIError(t, rec, http.StatusUnauthorized, "unauthorized", "token")
	if len(h.digs.sent) != 3 {
		t.Errorf("SendNow calls = %d, want 3 (none without auth)", len(h.digs.sent))
	}

	rec = h.get(t, "/api/v1/newsletters/daily/issues", "Authorization", bearer)
	wantStatus(t, rec, http.StatusMethodNotAllowed)
}

func TestGetIssue(t *testing.T) {
	h := newHarness(t)
	created := time.Date(2025, 3, 4, 7, 0, 0, 0, time.FixedZone("EST", -5*3600))
	h.digs.addIssue(&digest.Issue{ID: 7, NewsletterID: "daily", Status: digest.IssueSending, Subject: "Tuesday's brief", CreatedAt: created})
	h.digs.progress[7] = digest.Progress{Total: 10, Queued: 3, Sent: 4, Failed: 1, Bounced: 1, Cancelled: 1}

	rec := h.get(t, "/api/v1/issues/7", "Authorization", bearer)
	wantStatus(t, rec, http.StatusOK)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": float64(7), "newsletter": "daily", "status": "sending", "subject": "Tuesday's brief",
		"total": float64(10), "sent": float64(4), "failed": float64(1), "pending": float64(3),
		"bounced": float64(1), "cancelled": float64(1),
		"created_at": "2025-03-04T12:00:00Z", "completed_at": nil,
	}
	if len(got) != len(want) {
		t.Errorf("keys = %v, want %d", got, len(want))
	}
	for k, v := range want {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("%s = %#v, want %#v", k, gv, v)
		}
	}

	h.digs.issues[7].Status = digest.IssueSent
	h.digs.issues[7].CompletedAt = created.Add(time.Hour)
	rec = h.get(t, "/api/v1/issues/7", "Authorization", bearer)
	wantBody(t, rec, `"status":"sent"`, `"completed_at":"2025-03-04T13:00:00Z"`)

	tests := []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/issues/8", http.StatusNotFound, "not_found"},
		{"/api/v1/issues/abc", http.StatusBadRequest, "bad_request"},
		{"/api/v1/issues/0", http.StatusBadRequest, "bad_request"},
		{"/api/v1/issues/-7", http.StatusBadRequest, "bad_request"},
		{"/api/v1/issues/+7", http.StatusBadRequest, "bad_request"},
		{"/api/v1/issues/99999999999999999999", http.StatusBadRequest, "bad_request"},
	}
	for _, tt := range tests {
		rec := h.get(t, tt.path, "Authorization", bearer)
		wantAPIError(t, rec, tt.status, tt.code, "")
	}

	rec = h.get(t, "/api/v1/issues/7")
	wantAPIError(t, rec, http.StatusUnauthorized, "unauthorized", "token")
}
