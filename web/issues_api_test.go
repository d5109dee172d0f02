package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/delivery"
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

// As soon as the last message of an issue settles, the issue reads as
// sent, through the API and the admin issue page alike, without waiting
// for the scheduler's SettleIssues: the stored row is settled on the read,
// once, and its completion time stays as first shown.
func TestIssueSentOnceNothingIsLeftToSend(t *testing.T) {
	h := newRealHarness(t)
	ctx := t.Context()
	h.importCSV(t, "email,newsletters\nann@example.org,daily\nbob@example.org,daily\n")
	wantStatus(t, h.json(t, http.MethodPost, "/api/v1/articles", `{"url":"https://passblue.example/x","title":"X"}`), 201)
	rec := h.do(t, http.MethodPost, "/api/v1/newsletters/daily/issues", "", nil)
	wantStatus(t, rec, 202)
	id := decode[issueAccepted](t, rec).ID
	waitBuilt(t, h, id)
	target := "/api/v1/issues/" + strconv.FormatInt(id, 10)
	wantBody(t, h.get(t, target), `"status":"sending"`, `"pending":2`, `"completed_at":null`)

	jobs, err := h.db.ClaimMessages(ctx, "test", time.Now().Add(time.Second), time.Minute, 10)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("claimed %d, %v; want 2", len(jobs), err)
	}
	settle := func(j delivery.Job, o delivery.Outcome) {
		t.Helper()
		err := h.db.SettleMessages(ctx, "test", []delivery.Result{{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: o, At: time.Now(), Error: "x"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	settle(jobs[0], delivery.OutcomeSent)
	wantBody(t, h.get(t, target), `"status":"sending"`, `"pending":1`, `"completed_at":null`)
	if iss, err := h.db.FindIssue(ctx, id); err != nil || iss.Status != digest.IssueSending {
		t.Fatalf("stored issue with a message in flight: %+v, %v", iss, err)
	}

	settle(jobs[1], delivery.OutcomeFailed)
	got := decode[issueJSON](t, h.get(t, target))
	if got.Status != "sent" || got.Pending != 0 || got.Sent != 1 || got.Failed != 1 || got.CompletedAt == nil {
		t.Fatalf("issue after its last message settled = %+v, want sent with completed_at", got)
	}
	stored, err := h.db.FindIssue(ctx, id)
	if err != nil || stored.Status != digest.IssueSent || stored.CompletedAt.UTC().Format(time.RFC3339) != *got.CompletedAt {
		t.Fatalf("stored issue = %+v, %v; want sent at %s", stored, err, *got.CompletedAt)
	}
	// The scheduler's pass, later, changes nothing any more.
	if err := h.db.SettleIssues(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if again := decode[issueJSON](t, h.get(t, target)); again.Status != "sent" || again.CompletedAt == nil || *again.CompletedAt != *got.CompletedAt {
		t.Errorf("after SettleIssues: %+v, want %+v", again, got)
	}
	list := decode[issuePage](t, h.get(t, "/api/v1/issues?status=sent"))
	if len(list.Items) != 1 || list.Items[0].ID != id {
		t.Errorf("sent issues = %+v", list)
	}
}

// The admin issue page settles the issue just the same, and its progress
// feed then shows it sent.
func TestAdminIssueSentOnceNothingIsLeftToSend(t *testing.T) {
	h := newAdminHarness(t)
	_, id := h.seed(t)
	raw := h.login(t)
	ctx := t.Context()
	jobs, err := h.db.ClaimMessages(ctx, "test", time.Now().Add(time.Second), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	var res []delivery.Result
	for _, j := range jobs {
		res = append(res, delivery.Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: delivery.OutcomeSent, At: time.Now()})
	}
	if err := h.db.SettleMessages(ctx, "test", res); err != nil {
		t.Fatal(err)
	}
	rec := h.do(t, http.MethodGet, fmt.Sprintf("/admin/issues/%d", id), raw, nil)
	wantStatus(t, rec, 200)
	if strings.Contains(rec.Body.String(), `http-equiv="refresh"`) {
		t.Errorf("the page of an issue with nothing left to send still refreshes itself")
	}
	rec = h.do(t, http.MethodGet, fmt.Sprintf("/admin/issues/%d/progress", id), raw, nil)
	wantStatus(t, rec, 200)
	wantBody(t, rec, `"status":"sent"`, `"pending":0`, `"sent":2`)
	if strings.Contains(rec.Body.String(), `"completed_at":null`) {
		t.Errorf("progress of a sent issue has no completed_at: %s", rec.Body.String())
	}
}
