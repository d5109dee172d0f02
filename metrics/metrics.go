// Package metrics exposes Herald's Prometheus metrics: deliveries by kind
// and outcome, send latency, relay errors, outbox depth and signups, beside
// the Go runtime and process collectors. Each Metrics owns its registry;
// nothing is registered globally.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"herald/delivery"
)

// queueDepthTimeout bounds one QueueDepth callback, during a scrape.
const queueDepthTimeout = 5 * time.Second

// Signup results, as Signup records them.
const (
	SignupAccepted    = "accepted"     // a signup was taken (a confirmation email queued)
	SignupInvalid     = "invalid"      // the form did not validate
	SignupRateLimited = "rate_limited" // refused by the rate limiter
	SignupHoneypot    = "honeypot"     // a bot filled the honeypot field
)

// Metrics holds Herald's collectors in a registry of its own. It implements
// delivery.Observer and delivery.RelayErrorObserver, and its methods are
// safe for concurrent use.
type Metrics struct {
	registry    *prometheus.Registry
	handler     http.Handler
	messages    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	relayErrors *prometheus.CounterVec
	signups     *prometheus.CounterVec
	queue       *queueCollector
}

// New returns Metrics with every collector registered in a new registry.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_messages_total",
			Help: "Attempted messages by kind and outcome (sent, retry, failed, bounced, cancelled).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_send_duration_seconds",
			Help:    "Time to render and send one message, by kind (cancelled messages excluded).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
		relayErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_relay_errors_total",
			Help: "Failed sends by relay and SMTP reply code (0: no reply, a network error).",
		}, []string{"relay", "code"}),
		signups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_signups_total",
			Help: "Signup requests by result (accepted, invalid, rate_limited, honeypot).",
		}, []string{"result"}),
		queue: &queueCollector{desc: prometheus.NewDesc(
			"herald_queue_depth",
			"Outbox messages by status.",
			[]string{"status"}, nil,
		)},
	}
	for _, r := range []string{SignupAccepted, SignupInvalid, SignupRateLimited, SignupHoneypot} {
		m.signups.WithLabelValues(r)
	}
	m.registry.MustRegister(
		m.messages, m.duration, m.relayErrors, m.signups, m.queue,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		// A failing QueueDepth callback costs its own series only; the
		// failure shows in promhttp_metric_handler_errors_total.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.registry,
	})
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry returns the registry, for collectors registered elsewhere.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Observe implements delivery.Observer: it counts one attempted message and,
// unless it was cancelled before sending, its latency.
func (m *Metrics) Observe(kind string, outcome delivery.Outcome, latency time.Duration) {
	m.messages.WithLabelValues(kind, string(outcome)).Inc()
	if outcome != delivery.OutcomeCancelled {
		m.duration.WithLabelValues(kind).Observe(latency.Seconds())
	}
}

// RelayError implements delivery.RelayErrorObserver: it counts one failed
// send through relay with SMTP reply code (0 when there was no reply).
func (m *Metrics) RelayError(relay string, code int) {
	m.relayErrors.WithLabelValues(relay, strconv.Itoa(code)).Inc()
}

// Signup counts one signup request with result, one of the Signup
// constants.
func (m *Metrics) Signup(result string) {
	m.signups.WithLabelValues(result).Inc()
}

// QueueDepth makes herald_queue_depth report what count returns, on each
// scrape (count is called with a context that ends after 5 s). Until it is
// called, the gauge reports nothing. The SQLite and PostgreSQL stores'
// CountMessages fits.
func (m *Metrics) QueueDepth(count func(ctx context.Context) (map[string]int, error)) {
	m.queue.mu.Lock()
	defer m.queue.mu.Unlock()
	m.queue.count = count
}

// queueCollector reports the outbox depth by status from a callback.
type queueCollector struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	count func(ctx context.Context) (map[string]int, error)
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	count := c.count
	c.mu.Unlock()
	if count == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueDepthTimeout)
	defer cancel()
	depth, err := count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	// The outbox's statuses are always reported, at 0 when no row has
	// them, so that a series does not vanish when its last row moves on.
	for _, s := range []string{"queued", "sending", "sent", "failed", "bounced", "cancelled"} {
		if _, ok := depth[s]; !ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 0, s)
		}
	}
	for s, n := range depth {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), s)
	}
}
