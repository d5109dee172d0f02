package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// readyTimeout bounds the store check of /readyz.
const readyTimeout = 3 * time.Second

type healthStatus struct {
	Status string `json:"status"`
}

// handleHealth answers while the process serves requests at all.
func (s *Server) handleHealth(c echo.Context) error {
	return c.JSON(http.StatusOK, healthStatus{Status: "ok"})
}

// handleReady answers 200 when the store answers, 503 otherwise, so a load
// balancer sends no readers to an instance that cannot record them.
func (s *Server) handleReady(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	if err := s.subs.Ping(ctx); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "store not ready",
			slog.String("error", err.Error()), slog.String("request_id", requestID(c)))
		return c.JSON(http.StatusServiceUnavailable, healthStatus{Status: "unavailable"})
	}
	return c.JSON(http.StatusOK, healthStatus{Status: "ok"})
}
