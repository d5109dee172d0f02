package web

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"herald/subscribers"
)

// The subscriber growth chart's drawing area, in SVG user units; the SVG
// scales to its container through its viewBox.
const (
	chartW      = 640
	chartH      = 240
	chartLeft   = 44
	chartRight  = 12
	chartTop    = 12
	chartBottom = 32
)

// growthChart is the subscriber growth chart: an inline SVG line chart with
// a text table beside it for readers who cannot see it.
type growthChart struct {
	Title   string
	Desc    string // a summary a screen reader reads out
	Width   int
	Height  int
	Series  []chartSeries
	YTicks  []chartTick
	XTicks  []chartTick
	Rows    []chartRow // the same numbers as a table, oldest first
	Totals  chartRow
	PlotX0  int
	PlotX1  int
	PlotY0  int
	PlotY1  int
	MaxY    int
	HasData bool
}

// chartSeries is one line of the chart.
type chartSeries struct {
	Key    string // CSS class suffix: signups, confirmations, unsubscribes
	Label  string
	Points string // the polyline's points
	Dots   []chartDot
}

// chartDot is one data point, with its value for a tooltip.
type chartDot struct {
	X, Y  string
	R     string // radius: days without events get a smaller dot
	Value int
	Label string // "2025-03-04: 3 signups"
}

// chartTick is a label on an axis.
type chartTick struct {
	Pos    string // x or y, as SVG wants it
	Label  string
	Anchor string // text-anchor of an x label: start, middle or end
}

// chartRow is one day of the table.
type chartRow struct {
	Date          string
	Signups       int
	Confirmations int
	Unsubscribes  int
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten (at least 4), so
// that the axis has round labels.
func niceCeil(n int) int {
	if n < 4 {
		return 4
	}
	for base := 1; ; base *= 10 {
		for _, m := range []int{1, 2, 5} {
			if base*m >= n {
				return base * m
			}
		}
	}
}

func coord(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// buildGrowthChart lays out the signups, confirmations and unsubscribes of
// days (oldest first) as lines.
func buildGrowthChart(days []subscribers.DayActivity) growthChart {
	ch := growthChart{
		Title: "Subscriber growth, last " + strconv.Itoa(len(days)) + " days",
		Width: chartW, Height: chartH,
		PlotX0: chartLeft, PlotX1: chartW - chartRight, PlotY0: chartTop, PlotY1: chartH - chartBottom,
	}
	maxV := 0
	for _, d := range days {
		row := chartRow{Date: d.Day.Format(time.DateOnly), Signups: d.Signups + d.Imports, Confirmations: d.Confirmations, Unsubscribes: d.Unsubscribes}
		ch.Rows = append(ch.Rows, row)
		ch.Totals.Signups += row.Signups
		ch.Totals.Confirmations += row.Confirmations
		ch.Totals.Unsubscribes += row.Unsubscribes
		maxV = max(maxV, row.Signups, row.Confirmations, row.Unsubscribes)
	}
	ch.HasData = maxV > 0
	ch.MaxY = niceCeil(maxV)
	ch.Desc = fmt.Sprintf("Over the last %d days: %d signups, %d confirmations and %d unsubscribes; the busiest day had %d.",
		len(days), ch.Totals.Signups, ch.Totals.Confirmations, ch.Totals.Unsubscribes, maxV)
	plotW := float64(ch.PlotX1 - ch.PlotX0)
	plotH := float64(ch.PlotY1 - ch.PlotY0)
	x := func(i int) float64 {
		if len(days) < 2 {
			return float64(ch.PlotX0) + plotW/2
		}
		return float64(ch.PlotX0) + plotW*float64(i)/float64(len(days)-1)
	}
	y := func(v int) float64 { return float64(ch.PlotY1) - plotH*float64(v)/float64(ch.MaxY) }
	for _, frac := range []int{0, 1, 2, 3, 4} {
		v := ch.MaxY * frac / 4
		ch.YTicks = append(ch.YTicks, chartTick{Pos: coord(y(v)), Label: strconv.Itoa(v)})
	}
	if n := len(days); n > 0 {
		for _, i := range []int{0, n / 2, n - 1} {
			if i == n/2 && (i == 0 || i == n-1) {
				continue
			}
			anchor := "middle"
			switch {
			case n > 1 && i == 0:
				anchor = "start"
			case n > 1 && i == n-1:
				anchor = "end"
			}
			ch.XTicks = append(ch.XTicks, chartTick{Pos: coord(x(i)), Label: days[i].Day.Format("Jan 2"), Anchor: anchor})
		}
	}
	// Drawn in this order, so that signups, the line that matters most,
	// lies on top where lines meet; the legend lists them the other way.
	series := []struct {
		key, label string
		value      func(chartRow) int
	}{
		{"unsubscribes", "unsubscribes", func(r chartRow) int { return r.Unsubscribes }},
		{"confirmations", "confirmations", func(r chartRow) int { return r.Confirmations }},
		{"signups", "signups", func(r chartRow) int { return r.Signups }},
	}
	for _, sr := range series {
		cs := chartSeries{Key: sr.key, Label: sr.label}
		pts := make([]byte, 0, len(ch.Rows)*12)
		for i, row := range ch.Rows {
			v := sr.value(row)
			px, py := coord(x(i)), coord(y(v))
			if i > 0 {
				pts = append(pts, ' ')
			}
			pts = append(pts, px+","+py...)
			r := "3.5"
			if v == 0 {
				r = "1.5"
			}
			cs.Dots = append(cs.Dots, chartDot{X: px, Y: py, R: r, Value: v, Label: fmt.Sprintf("%s: %d %s", row.Date, v, sr.label)})
		}
		cs.Points = string(pts)
		ch.Series = append(ch.Series, cs)
	}
	return ch
}

// Legend lists the series in reading order: signups, confirmations,
// unsubscribes.
func (ch growthChart) Legend() []chartSeries {
	out := slices.Clone(ch.Series)
	slices.Reverse(out)
	return out
}

// deliverability is the bounce and complaint panel: rates over the last
// 30 days, against the 0.3% spam-complaint rate Gmail tells bulk senders
// never to reach.
type deliverability struct {
	Days       int
	Sent       int // digest messages delivered or bounced in the window
	Bounces    int
	Complaints int
	Rates      []rateBar
}

// rateBar is one rate drawn against the Gmail line.
type rateBar struct {
	Label   string
	Count   int
	Percent string // "0.12%", or "—" with nothing sent
	Width   string // the bar's width, in percent of the scale
	Level   string // ok, warn (over 0.1%), over (0.3% or more)
}

// gmailLine is the complaint rate Gmail's bulk sender rules forbid
// reaching (0.3%); under 0.1% is what it recommends.
const (
	gmailLine    = 0.003
	gmailWarn    = 0.001
	rateScaleMax = 0.006 // the bars' full width: twice the line
)

// GmailLinePos is where the 0.3% line sits on the bars, in percent.
func (deliverability) GmailLinePos() string { return coord(100 * gmailLine / rateScaleMax) }

func buildDeliverability(days, sent, bounces, complaints int) deliverability {
	d := deliverability{Days: days, Sent: sent, Bounces: bounces, Complaints: complaints}
	for _, r := range []struct {
		label string
		n     int
	}{{"Bounce rate", bounces}, {"Complaint rate", complaints}} {
		b := rateBar{Label: r.label, Count: r.n, Percent: "—", Width: "0", Level: "ok"}
		if sent > 0 {
			rate := float64(r.n) / float64(sent)
			b.Percent = strconv.FormatFloat(100*rate, 'f', 2, 64) + "%"
			b.Width = coord(100 * min(rate, rateScaleMax) / rateScaleMax)
			switch {
			case rate >= gmailLine:
				b.Level = "over"
			case rate > gmailWarn:
				b.Level = "warn"
			}
		}
		d.Rates = append(d.Rates, b)
	}
	return d
}
