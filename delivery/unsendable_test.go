package delivery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"herald/mailer"
)

// panicky panics when rendering one job and renders the others normally.
type panicky struct {
	next  Renderer
	panic int64
}

func (p panicky) Render(ctx context.Context, j Job) (*mailer.Email, error) {
	if j.ID == p.panic {
		panic("template exploded")
	}
	return p.next.Render(ctx, j)
}

// A renderer that panics fails that one message at once; the engine and the
// other messages carry on. A message that can never be rendered (invalid
// data) fails at once too instead of retrying for days.
func TestUnsendableMessagesFailAtOnce(t *testing.T) {
	h := newHarness()
	ok := h.store.add("welcome")
	crashes := h.store.add("welcome")
	invalid := h.store.add("welcome")
	h.renderer.fail(invalid, fmt.Errorf("compose welcome: %w", mailer.ErrInvalidEmail))
	e := New(h.store, panicky{next: h.renderer, panic: crashes}, h.transport, h.cfg)
	stop := start(t, e)

	eventually(t, "every message settled", func() bool {
		return slices.Equal(h.store.statuses(), []string{"sent", "failed", "failed"})
	})
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	want := map[int64]string{ok: "sent", crashes: "failed", invalid: "failed"}
	for id, status := range want {
		if got := h.store.row(id).Status; got != status {
			t.Errorf("message %d: status %q, want %q", id, got, status)
		}
	}
	if got := h.store.row(crashes).LastError; !strings.Contains(got, "panic") {
		t.Errorf("panicked message's reason = %q", got)
	}
	if lines := h.logs.matching("renderer panicked"); len(lines) != 1 || !strings.Contains(lines[0], "stack=") {
		t.Errorf("panic logged as %q, want once with its stack", lines)
	}
}
