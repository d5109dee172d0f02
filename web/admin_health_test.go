package web

import (
	"net/http"
	"testing"
)

// The dashboard shows the server warnings found at start in a "Server
// health" card, and no such card when there are none.
func TestAdminDashboardServerWarnings(t *testing.T) {
	h := newAdminHarness(t)
	raw := h.login(t)
	rec := h.do(t, http.MethodGet, "/admin", raw, nil)
	wantStatus(t, rec, http.StatusOK)
	wantNoBody(t, rec, "Server health")

	h.srv.cfg.ServerWarnings = []string{"PostgreSQL's autovacuum setting is off: <see docs/scale-out.md>."}
	rec = h.do(t, http.MethodGet, "/admin", raw, nil)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `<h2 id="health-title">Server health</h2>`,
		`<li class="error">PostgreSQL&#39;s autovacuum setting is off: &lt;see docs/scale-out.md&gt;.</li>`)
}
