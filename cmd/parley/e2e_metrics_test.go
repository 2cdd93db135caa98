package main

// Helpers of the end-to-end tests that read a node's Prometheus metrics
// (`parley run --metrics`) and that make any API request from goroutines
// other than the test's (rawSender.do).

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var metricsLine = regexp.MustCompile(`(?m)^Metrics: (http://127\.0\.0\.1:[0-9]+/metrics)$`)

// startPairMetrics is startPair with alice serving Prometheus metrics on a
// free loopback port (PARLEY_METRICS=127.0.0.1:0, the environment form of
// --metrics 127.0.0.1:0); it returns the metrics URL alice printed.
func startPairMetrics(t *testing.T) (a, b *proc, metricsURL string) {
	t.Helper()
	a = startProc(t, "alice", t.TempDir(), nil, "", envMetrics+"=127.0.0.1:0")
	m := metricsLine.FindStringSubmatch(a.stdout.String())
	if m == nil {
		t.Fatalf("alice printed no metrics URL; stdout:\n%s", a.stdout)
	}
	b = startProc(t, "bob", t.TempDir(), nil, "")
	a.register("Alice")
	b.register("Bob")
	befriend(t, a, b)
	return a, b, m[1]
}

// scrapeMetrics reads the Prometheus text page at url and returns the
// samples without labels of the metrics named; a metric missing from the
// page is an error.
func scrapeMetrics(url string, names ...string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	got := make(map[string]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !want[f[0]] { // comments, labelled samples, others
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return nil, fmt.Errorf("scraping %s: %s: %w", url, f[0], err)
		}
		got[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	for _, n := range names {
		if _, ok := got[n]; !ok {
			return nil, fmt.Errorf("scraping %s: no sample of %s", url, n)
		}
	}
	return got, nil
}

// do sends one API request (body: nil, or JSON) and returns the status
// and the answer's body; only a failed exchange is an error.
func (s *rawSender) do(method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}
