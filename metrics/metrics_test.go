package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"herald/delivery"
	"herald/metrics"
)

// The engine takes Metrics as its Observer and tells it of relay errors.
var (
	_ delivery.Observer           = (*metrics.Metrics)(nil)
	_ delivery.RelayErrorObserver = (*metrics.Metrics)(nil)
)

// scrape GETs /metrics from m's handler and parses the text format.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return fams
}

// series returns the metrics of family name as "label=value,..." -> metric.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]*dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	out := map[string]*dto.Metric{}
	for _, m := range f.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(labels)
		out[strings.Join(labels, ",")] = m
	}
	return out
}

// values returns the counter or gauge values of family name by labels.
func values(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for k, m := range series(t, fams, name) {
		switch {
		case m.Counter != nil:
			out[k] = m.Counter.GetValue()
		case m.Gauge != nil:
			out[k] = m.Gauge.GetValue()
		default:
			t.Fatalf("%s{%s} is neither a counter nor a gauge", name, k)
		}
	}
	return out
}

func equal(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestMessagesAndLatency(t *testing.T) {
	m := metrics.New()
	m.Observe("digest", delivery.OutcomeSent, 3*time.Millisecond)
	m.Observe("digest", delivery.OutcomeSent, 40*time.Millisecond)
	m.Observe("digest", delivery.OutcomeRetry, 2*time.Second)
	m.Observe("digest", delivery.OutcomeBounced, 20*time.Millisecond)
	m.Observe("welcome", delivery.OutcomeFailed, 12*time.Millisecond)
	m.Observe("welcome", delivery.OutcomeCancelled, time.Millisecond)

	fams := scrape(t, m)
	got := values(t, fams, "herald_messages_total")
	want := map[string]float64{
		"kind=digest,outcome=sent":       2,
		"kind=digest,outcome=retry":      1,
		"kind=digest,outcome=bounced":    1,
		"kind=welcome,outcome=failed":    1,
		"kind=welcome,outcome=cancelled": 1,
	}
	if !equal(got, want) {
		t.Errorf("herald_messages_total = %v, want %v", got, want)
	}

	hists := series(t, fams, "herald_send_duration_seconds")
	h := hists["kind=digest"].GetHistogram()
	if h == nil {
		t.Fatalf("no histogram for digest: %v", hists)
	}
	if h.GetSampleCount() != 4 {
		t.Errorf("digest latency count = %d, want 4", h.GetSampleCount())
	}
	if got, want := h.GetSampleSum(), 2.063; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("digest latency sum = %v, want %v", got, want)
	}
	cum := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	for bound, n := range map[float64]uint64{0.001: 0, 0.005: 1, 0.025: 2, 0.05: 3, 1: 3, 2.5: 4, 30: 4} {
		if cum[bound] != n {
			t.Errorf("digest latency bucket le=%v = %d, want %d", bound, cum[bound], n)
		}
	}
	// A cancelled message was never sent: it has no latency.
	if w := hists["kind=welcome"].GetHistogram(); w.GetSampleCount() != 1 {
		t.Errorf("welcome latency count = %d, want 1 (the cancelled one left out)", w.GetSampleCount())
	}
}

func TestRelayErrorsAndSignups(t *testing.T) {
	m := metrics.New()
	m.RelayError("primary", 421)
	m.RelayError("primary", 421)
	m.RelayError("backup", 0)
	m.Signup(metrics.SignupAccepted)
	m.Signup(metrics.SignupAccepted)
	m.Signup(metrics.SignupHoneypot)

	fams := scrape(t, m)
	if got, want := values(t, fams, "herald_relay_errors_total"), map[string]float64{
		"code=421,relay=primary": 2,
		"code=0,relay=backup":    1,
	}; !equal(got, want) {
		t.Errorf("herald_relay_errors_total = %v, want %v", got, want)
	}
	// Every result is reported from the start, at 0 until it happens.
	if got, want := values(t, fams, "herald_signups_total"), map[string]float64{
		"result=accepted":     2,
		"result=invalid":      0,
		"result=rate_limited": 0,
		"result=honeypot":     1,
	}; !equal(got, want) {
		t.Errorf("herald_signups_total = %v, want %v", got, want)
	}
}

func TestQueueDepth(t *testing.T) {
	m := metrics.New()
	if _, ok := scrape(t, m)["herald_queue_depth"]; ok {
		t.Errorf("herald_queue_depth reported before QueueDepth was called")
	}

	var gotDeadline bool
	m.QueueDepth(func(ctx context.Context) (map[string]int, error) {
		_, gotDeadline = ctx.Deadline()
		return map[string]int{"queued": 7, "sent": 93, "on_hold": 1}, nil
	})
	got := values(t, scrape(t, m), "herald_queue_depth")
	want := map[string]float64{
		"status=queued": 7, "status=sent": 93, "status=on_hold": 1,
		"status=sending": 0, "status=failed": 0, "status=bounced": 0, "status=cancelled": 0,
	}
	if !equal(got, want) {
		t.Errorf("herald_queue_depth = %v, want %v", got, want)
	}
	if !gotDeadline {
		t.Errorf("the callback's context has no deadline")
	}
}

func TestQueueDepthErrorKeepsTheRest(t *testing.T) {
	m := metrics.New()
	m.Observe("digest", delivery.OutcomeSent, time.Millisecond)
	m.QueueDepth(func(context.Context) (map[string]int, error) {
		return nil, errors.New("database is locked")
	})
	fams := scrape(t, m)
	if _, ok := fams["herald_queue_depth"]; ok {
		t.Errorf("herald_queue_depth reported although the count failed")
	}
	if got := values(t, fams, "herald_messages_total")["kind=digest,outcome=sent"]; got != 1 {
		t.Errorf("herald_messages_total{digest,sent} = %v, want 1", got)
	}
	// The handler counts the failure after answering: the next scrape
	// shows it.
	fams = scrape(t, m)
	if got := values(t, fams, "promhttp_metric_handler_errors_total")["cause=gathering"]; got != 1 {
		t.Errorf("promhttp_metric_handler_errors_total{cause=gathering} after one failed scrape = %v, want 1", got)
	}
}

func TestRuntimeCollectorsAndIsolation(t *testing.T) {
	a, b := metrics.New(), metrics.New() // no global registry: two coexist
	a.Signup(metrics.SignupInvalid)
	fams := scrape(t, b)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	if got := values(t, fams, "herald_signups_total")["result=invalid"]; got != 0 {
		t.Errorf("b counted a's signup: %v", got)
	}
}
