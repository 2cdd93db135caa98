package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/parley-chat/parley/internal/benchdata"
)

// The plots' size.
const (
	plotWidth  = 18 * vg.Centimeter
	plotHeight = 11 * vg.Centimeter
)

// palette is the Okabe–Ito colour set, told apart also by the colour blind.
func palette(i int) color.Color {
	cs := []color.RGBA{
		{0, 114, 178, 255},   // blue
		{230, 159, 0, 255},   // orange
		{0, 158, 115, 255},   // green
		{204, 121, 167, 255}, // purple
		{86, 180, 233, 255},  // sky blue
		{213, 94, 0, 255},    // vermillion
		{0, 0, 0, 255},       // black
	}
	return cs[i%len(cs)]
}

// targetColor draws the targets.
func targetColor() color.Color { return color.RGBA{200, 0, 0, 255} }

// numTicks are gonum's default ticks labelled as the README prints
// numbers (5,000 rather than 5000.00).
type numTicks struct{}

func (numTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = fmtNum(ts[i].Value)
		}
	}
	return ts
}

// savePNG draws a w × h picture at dpi with drawFn and writes it to path.
func savePNG(path string, w, h vg.Length, dpi int, drawFn func(draw.Canvas)) error {
	c := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
	drawFn(draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// dashedLine is a horizontal target line from x0 to x1 at y.
func dashedLine(x0, x1, y float64) (*plotter.Line, error) {
	l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	l.Color = targetColor()
	l.Width = vg.Points(1.5)
	l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	return l, nil
}

// cdfSeries is one curve of the latency plot: the first of records that
// has the series.
type cdfSeries struct {
	label   string
	records []string
	series  string
}

func latencySeries() []cdfSeries {
	return []cdfSeries{
		{"sessions: Send → B's message event", []string{"node-latency-sessions"}, "ms"},
		{"RSA envelopes: Send → B's message event", []string{"node-latency-rsa"}, "ms"},
		{"raw libp2p stream round trip, same size", []string{"node-latency-sessions", "node-latency-rsa"}, "raw-stream-ms"},
		{"HTTP API: send_message → WebSocket event", []string{"api-latency"}, "api-ms"},
	}
}

// ecdf is the empirical CDF of the positive samples, as points of a
// post-step line.
func ecdf(samples []float64) plotter.XYs {
	s := slices.DeleteFunc(slices.Clone(samples), func(v float64) bool { return !(v > 0) || math.IsInf(v, 0) })
	slices.Sort(s)
	xys := make(plotter.XYs, len(s))
	for i, v := range s {
		xys[i] = plotter.XY{X: v, Y: float64(i+1) / float64(len(s))}
	}
	return xys
}

// latencyPlot draws the CDFs of the latency series there are, with the
// sessions' (and the API's) targets as marks, and the legend below the
// plot, clear of the curves; nil when there are none.
func latencyPlot(d *data) (func(draw.Canvas), error) {
	c := newCDFPlot("Latency at low load, one message at a time: CDF")
	for i, cs := range latencySeries() {
		var samples []float64
		for _, r := range cs.records {
			if s := d.records[r].Series[cs.series]; len(s) > 0 {
				samples = s
				break
			}
		}
		if err := c.curve(i, cs.label, samples); err != nil {
			return nil, err
		}
	}
	if c.curves == 0 {
		return nil, nil
	}
	marks := plotter.XYLabels{XYs: plotter.XYs{{X: 0.5, Y: 0.5}, {X: 2, Y: 0.99}},
		Labels: []string{"sessions p50", "sessions p99"}}
	label := "targets: sessions p50 ≤ 0.5 ms, p99 ≤ 2 ms"
	if _, ok := d.records["api-latency"]; ok {
		marks.XYs = append(marks.XYs, plotter.XY{X: 1, Y: 0.5})
		marks.Labels = append(marks.Labels, "API p50")
		label += "; API p50 ≤ 1 ms"
	}
	if err := c.targets(marks, label); err != nil {
		return nil, err
	}
	return c.draw(), nil
}

// cdfPlot is a latency CDF figure being built (log x axis): its curves,
// its target marks, and the x range they span.
type cdfPlot struct {
	p      *plot.Plot
	legend plot.Legend
	lo, hi float64
	curves int
}

func newCDFPlot(title string) *cdfPlot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of messages ≤ latency"
	p.Add(plotter.NewGrid())
	return &cdfPlot{p: p, legend: plot.NewLegend(), lo: math.Inf(1), hi: math.Inf(-1)}
}

// curve adds the CDF of samples as the i-th curve, labelled with its
// count; none for no samples.
func (c *cdfPlot) curve(i int, label string, samples []float64) error {
	xys := ecdf(samples)
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("plot %s: %w", label, err)
	}
	l.StepStyle = plotter.PostStep
	l.Color = palette(i)
	l.Width = vg.Points(1.8)
	c.p.Add(l)
	c.legend.Add(fmt.Sprintf("%s (n=%d)", label, len(xys)), l)
	c.lo, c.hi = min(c.lo, xys[0].X), max(c.hi, xys[len(xys)-1].X)
	c.curves++
	return nil
}

// targets marks the points of marks as targets (crosses, labelled),
// with label as their one legend entry.
func (c *cdfPlot) targets(marks plotter.XYLabels, label string) error {
	sc, err := plotter.NewScatter(marks)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	sc.GlyphStyle = draw.GlyphStyle{Color: targetColor(), Radius: vg.Points(4), Shape: draw.CrossGlyph{}}
	c.p.Add(sc)
	lb, err := plotter.NewLabels(marks)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].Color = targetColor()
		lb.TextStyle[i].Font.Size = vg.Points(8)
		lb.TextStyle[i].XAlign, lb.TextStyle[i].YAlign = draw.XCenter, draw.YTop
	}
	lb.Offset = vg.Point{Y: -vg.Points(6)}
	c.p.Add(lb)
	c.legend.Add(label, sc)
	for _, m := range marks.XYs {
		c.lo, c.hi = min(c.lo, m.X), max(c.hi, m.X)
	}
	return nil
}

// draw finishes the axes around the curves and marks and returns the
// figure, its legend below.
func (c *cdfPlot) draw() func(draw.Canvas) {
	c.p.X.Scale = plot.LogScale{}
	c.p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	c.p.X.Min, c.p.X.Max = c.lo/1.3, c.hi*1.3
	c.p.Y.Min, c.p.Y.Max = 0, 1.02
	return legendBelow(c.p, c.legend)
}

// legendBelow draws p with legend under it rather than over the data.
func legendBelow(p *plot.Plot, legend plot.Legend) func(draw.Canvas) {
	legend.Top, legend.Left = true, true
	legend.TextStyle.Font.Size = vg.Points(9)
	return func(dc draw.Canvas) {
		r := legend.Rectangle(dc)
		h := r.Max.Y - r.Min.Y + 4*vg.Millimeter
		p.Draw(draw.Crop(dc, 0, 0, h, 0))
		legend.Draw(draw.Crop(dc, 12*vg.Millimeter, 0, vg.Millimeter, -(dc.Max.Y - dc.Min.Y - h)))
	}
}

// throughputBars are the bars of a mode's throughput panel: figures of
// node-throughput-<mode>.
func throughputBars() []struct{ label, figure string } {
	return []struct{ label, figure string }{
		{"measured", "msgs/s"},
		{"crypto\nbound", "crypto-bound-msgs/s"},
		{"fsync bound\n1 sync/msg", "fsync-bound-msgs/s"},
		{"fsync bound\nas grouped", "fsync-bound-grouped-msgs/s"},
	}
}

// throughputPanel is one mode's bars; nil without the mode's record.
func throughputPanel(d *data, mode string) (*plot.Plot, error) {
	r, ok := d.records["node-throughput-"+mode]
	if !ok {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = mode
	if n, ok := r.Figures["senders"]; ok {
		p.Title.Text += fmt.Sprintf(" (%d senders)", int(n))
	}
	p.Y.Label.Text = "messages/s"
	p.Y.Tick.Marker = numTicks{}
	p.Y.Min = 0
	grid := plotter.NewGrid()
	grid.Vertical.Width = 0
	p.Add(grid)
	bars := throughputBars()
	names := make([]string, len(bars))
	var labels plotter.XYLabels
	top := 0.0
	for i, b := range bars {
		names[i] = b.label
		v, ok := r.Figures[b.figure]
		if !ok || !(v >= 0) {
			labels.XYs = append(labels.XYs, plotter.XY{X: float64(i), Y: 0})
			labels.Labels = append(labels.Labels, "not measured")
			continue
		}
		bc, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(34))
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", b.figure, err)
		}
		bc.XMin = float64(i)
		bc.Color = palette(i)
		bc.LineStyle.Width = 0
		p.Add(bc)
		labels.XYs = append(labels.XYs, plotter.XY{X: float64(i), Y: v})
		labels.Labels = append(labels.Labels, fmtNum(math.Round(v)))
		top = max(top, v)
	}
	var target float64
	var targetLabel string
	switch mode {
	case "sessions":
		target, targetLabel = 5000, "target ≥ 5,000 msgs/s"
	case "rsa":
		if cb, ok := r.Figures["crypto-bound-msgs/s"]; ok {
			target, targetLabel = 0.9*cb, "target ≥ 0.9 × crypto bound"
		}
	}
	if target > 0 {
		l, err := dashedLine(-0.5, float64(len(bars))-0.5, target)
		if err != nil {
			return nil, err
		}
		p.Add(l)
		p.Legend.Add(targetLabel, l)
		p.Legend.Top = true
		p.Legend.TextStyle.Font.Size = vg.Points(9)
		top = max(top, target)
	}
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = draw.XCenter
		lb.TextStyle[i].Font.Size = vg.Points(9)
	}
	lb.Offset = vg.Point{Y: vg.Points(3)}
	p.Add(lb)
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.Y.Max = top * 1.25
	return p, nil
}

// throughputPlot draws a panel for each mode with a record, side by side;
// nil when there are none.
func throughputPlot(d *data) (func(draw.Canvas), error) {
	var panels []*plot.Plot
	for _, mode := range []string{"sessions", "rsa"} {
		p, err := throughputPanel(d, mode)
		if err != nil {
			return nil, err
		}
		if p != nil {
			panels = append(panels, p)
		}
	}
	if len(panels) == 0 {
		return nil, nil
	}
	return func(dc draw.Canvas) {
		const titleHeight = 8 * vg.Millimeter
		sty := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 12), Handler: plot.DefaultTextHandler,
			XAlign: draw.XCenter, YAlign: draw.YCenter}
		dc.FillText(sty, vg.Point{X: dc.Center().X, Y: dc.Max.Y - titleHeight/2},
			"Throughput A→B: measured vs the crypto and fsync bounds")
		body := draw.Crop(dc, 0, 0, 0, -titleHeight)
		tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: 6 * vg.Millimeter,
			PadTop: vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
		cs := plot.Align([][]*plot.Plot{panels}, tiles, body)
		for i, p := range panels {
			p.Draw(cs[0][i])
		}
	}, nil
}

// rssPlot draws the api-burst record's RSS points of each node over the
// burst, with the 80 MiB target; nil without them.
func rssPlot(d *data) (*plot.Plot, error) {
	r := d.records["api-burst"]
	var keys []string
	for k, pts := range r.Points {
		if strings.HasPrefix(k, "rss-mib") && len(pts) > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.Sort(keys)
	p := plot.New()
	p.Title.Text = "Resident memory during an API burst"
	if v, ok := r.Figures["msgs/s"]; ok {
		p.Title.Text += " (" + fmtNum(v) + " msgs/s)"
	}
	p.X.Label.Text = "time since the burst started (s)"
	p.Y.Label.Text = "RSS (MiB)"
	p.Y.Tick.Marker = numTicks{}
	p.Add(plotter.NewGrid())
	x0, x1, top := math.Inf(1), math.Inf(-1), 0.0
	for i, k := range keys {
		xys := make(plotter.XYs, len(r.Points[k]))
		for j, pt := range r.Points[k] {
			xys[j] = plotter.XY{X: pt[0], Y: pt[1]}
			x0, x1, top = min(x0, pt[0]), max(x1, pt[0]), max(top, pt[1])
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", k, err)
		}
		l.Color = palette(i)
		l.Width = vg.Points(1.8)
		p.Add(l)
		p.Legend.Add(rssLabel(r, k), l)
	}
	if x1 <= x0 {
		x1 = x0 + 1
	}
	const limit = 80
	tl, err := dashedLine(x0, x1, limit)
	if err != nil {
		return nil, err
	}
	p.Add(tl)
	p.Legend.Add("target: peak ≤ 80 MiB", tl)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Y.Min, p.Y.Max = 0, max(top, limit)*1.15
	return p, nil
}

// rssLabel names the node of the api-burst points rss-mib-<node>, with
// its peak (figure peak-rss-mib-<node> or peak-rss-<node>-mib).
func rssLabel(r benchdata.Record, key string) string {
	node := strings.TrimPrefix(strings.TrimPrefix(key, "rss-mib"), "-")
	if node == "" {
		return key
	}
	label := "node " + strings.ToUpper(node)
	for _, f := range []string{"peak-rss-mib-" + node, "peak-rss-" + node + "-mib"} {
		if peak, ok := r.Figures[f]; ok {
			return label + fmt.Sprintf(" (peak %.1f MiB)", peak)
		}
	}
	return label
}

// writePlots writes the plots there is data for into dir at dpi, removes
// the files of those there is not (a stale plot is worse than none), and
// returns the names written.
func writePlots(d *data, dir string, dpi int) (map[string]bool, error) {
	made := map[string]bool{}
	lat, err := latencyPlot(d)
	if err != nil {
		return nil, err
	}
	thr, err := throughputPlot(d)
	if err != nil {
		return nil, err
	}
	rss, err := rssPlot(d)
	if err != nil {
		return nil, err
	}
	grp, err := groupFanoutPlot(d)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		h    vg.Length
		draw func(draw.Canvas)
	}{
		{figLatency, plotHeight + 2*vg.Centimeter, lat}, // and the legend below
		{figThroughput, plotHeight, thr},
		{figRSS, plotHeight, plotDrawer(rss)},
		{figGroupFanout, plotHeight + 2*vg.Centimeter, grp},
	} {
		path := filepath.Join(dir, f.name)
		if f.draw == nil {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return nil, fmt.Errorf("plot: %w", err)
			}
			continue
		}
		if err := savePNG(path, plotWidth, f.h, dpi, f.draw); err != nil {
			return nil, err
		}
		made[f.name] = true
	}
	return made, nil
}

func plotDrawer(p *plot.Plot) func(draw.Canvas) {
	if p == nil {
		return nil
	}
	return p.Draw
}
