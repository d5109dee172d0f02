package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/subscribers"
)

const bearer = "Bearer s3cret-admin-token"

func TestAPIAuth(t *testing.T) {
	tests := []struct {
		name   string
		token  string // configured
		header string // sent
		want   int
	}{
		{"no header", "s3cret-admin-token", "", http.StatusUnauthorized},
		{"wrong token", "s3cret-admin-token", "Bearer nope", http.StatusUnauthorized},
		{"prefix of the token", "s3cret-admin-token", "Bearer s3cret", http.StatusUnauthorized},
		{"basic scheme", "s3cret-admin-token", "Basic s3cret-admin-token", http.StatusUnauthorized},
		{"API disabled", "", "Bearer ", http.StatusUnauthorized},
		{"API disabled, any token", "", "Bearer anything", http.StatusUnauthorized},
		{"right token", "s3cret-admin-token", bearer, http.StatusOK},
		{"scheme in lower case", "s3cret-admin-token", "bearer s3cret-admin-token", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.AdminToken = tt.token })
			var headers []string
			if tt.header != "" {
				headers = []string{"Authorization", tt.header}
			}
			rec := h.get(t, "/api/v1/subscribers", headers...)
			wantStatus(t, rec, tt.want)
			if tt.want != http.StatusUnauthorized {
				return
			}
			wantHeader(t, rec, "WWW-Authenticate", "Bearer")
			wantHeader(t, rec, "Content-Type", "application/json")
			var got apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Error.Code != "unauthorized" || got.Error.Message == "" {
				t.Errorf("body = %s (%v)", rec.Body.String(), err)
			}
			if h.subs.callsOf("FindSubscribers") != 0 {
				t.Error("the service was called without auth")
			}
		})
	}
}

func TestAPIParams(t *testing.T) {
	tests := []struct {
		query  string
		status int
		code   string
		msg    string
	}{
		{"status=deleted", 422, "invalid", "status must be one of pending, active, unsubscribed, bounced, complained"},
		{"limit=0", 422, "invalid", "limit"},
		{"limit=501", 422, "invalid", "limit"},
		{"limit=ten", 422, "invalid", "limit"},
		{"cursor=%21%21", 400, "bad_request", "cursor"},
		{"cursor=" + "YWJj", 400, "bad_request", "cursor"}, // base64url of "abc"
		{"q=a%0Ab", 422, "invalid", "q"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			h := newHarness(t)
			rec := h.get(t, "/api/v1/subscribers?"+tt.query, "Authorization", bearer)
			wantStatus(t, rec, tt.status)
			var got apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body = %s: %v", rec.Body.String(), err)
			}
			if got.Error.Code != tt.code || !strings.Contains(got.Error.Message, tt.msg) {
				t.Errorf("error = %+v", got.Error)
			}
		})
	}
}

func TestAPIListAndPage(t *testing.T) {
	h := newHarness(t)
	created := time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("EST", -5*3600))
	for i := int64(1); i <= 5; i++ {
		s := &subscribers.Subscriber{ID: i, Email: "reader" + string(rune('0'+i)) + "@example.org", Status: subscribers.StatusPending, CreatedAt: created}
		if i%2 == 0 {
			s.Status = subscribers.StatusActive
			s.Newsletters = []string{"daily"}
			s.ConfirmedAt = created.Add(time.Hour)
		}
		h.subs.list = append(h.subs.list, s)
	}

	// The shape of one item, exactly.
	rec := h.get(t, "/api/v1/subscribers?limit=2", "Authorization", bearer)
	wantStatus(t, rec, http.StatusOK)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2 || raw["items"] == nil || raw["next_cursor"] == nil {
		t.Fatalf("top-level keys of %s", rec.Body.String())
	}
	var items []map[string]any
	_ = json.Unmarshal(raw["items"], &items)
	if len(items) != 2 {
		t.Fatalf("items = %d, want 2", len(items))
	}
	first := items[0]
	if len(first) != 7 {
		t.Errorf("item keys = %v, want 7", first)
	}
	if first["confirmed_at"] != nil || first["created_at"] != "2025-03-04T10:06:07Z" || first["status"] != "pending" {
		t.Errorf("first item = %v", first)
	}
	if nl, ok := first["newsletters"].([]any); !ok || len(nl) != 0 {
		t.Errorf("newsletters = %#v, want []", first["newsletters"])
	}
	if items[1]["confirmed_at"] != "2025-03-04T11:06:07Z" {
		t.Errorf("confirmed_at = %v", items[1]["confirmed_at"])
	}
	if f := h.subs.filters[0]; f.Limit != 3 || f.AfterID != 0 {
		t.Errorf("filter = %+v, want limit+1 = 3", f)
	}

	// Walk every page.
	var ids []int64
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		rec := h.get(t, "/api/v1/subscribers?limit=2&cursor="+cursor, "Authorization", bearer)
		wantStatus(t, rec, http.StatusOK)
		var page subscriberPage
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(ids) != 5 || ids[0] != 1 || ids[4] != 5 {
		t.Errorf("ids = %v", ids)
	}

	// Filters reach the service; an empty result is [] not null.
	rec = h.get(t, "/api/v1/subscribers?status=bounced&q=reader", "Authorization", bearer)
	wantStatus(t, rec, http.StatusOK)
	if got := strings.TrimSpace(rec.Body.String()); got != `{"items":[],"next_cursor":""}` {
		t.Errorf("body = %s", got)
	}
	last := h.subs.filters[len(h.subs.filters)-1]
	if last.Status != subscribers.StatusBounced || last.Query != "reader" || last.Limit != defaultPageSize+1 {
		t.Errorf("filter = %+v", last)
	}
}

func TestCursor(t *testing.T) {
	for _, id := range []int64{1, 42, 1 << 62} {
		got, ok := decodeCursor(encodeCursor(id))
		if !ok || got != id {
			t.Errorf("round trip of %d = %d, %v", id, got, ok)
		}
	}
	for _, bad := range []string{"", "!!", "YWJj", "MA", "LTE", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5"} {
		if _, ok := decodeCursor(bad); ok {
			t.Errorf("decodeCursor(%q) accepted", bad)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add("MQ")
	f.Add(encodeCursor(123456))
	f.Add("=!")
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := decodeCursor(s)
		if ok && id < 1 {
			t.Fatalf("decodeCursor(%q) = %d", s, id)
		}
		if ok {
			if again, ok2 := decodeCursor(encodeCursor(id)); !ok2 || again != id {
				t.Fatalf("round trip of %d failed", id)
			}
		}
	})
}
