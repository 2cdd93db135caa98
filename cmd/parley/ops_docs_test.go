package main

// Tests of docs/ops: the alert rules, the Grafana dashboard, the systemd
// units and the example configuration file, and that every metric the
// rules and the dashboard use is exported by real processes after
// traffic.

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const opsDir = "../../docs/ops"

// alertRules is docs/ops/alerts.yml as Prometheus reads it.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readAlertRules(t *testing.T) alertRules {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(opsDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var r alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	return r
}

// opsExprs are the PromQL expressions of the alert rules and the
// dashboard.
func opsExprs(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, g := range readAlertRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	b, err := os.ReadFile(filepath.Join(opsDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	return exprs
}

var metricName = regexp.MustCompile(`\b(parley_[a-z0-9_]+|libp2p_[a-z0-9_]+)`)

// TestOpsFiles checks the files of docs/ops without running anything but
// the tools that check them, when installed: the rules are valid YAML of
// Prometheus's shape (and pass promtool check rules), every rule has a
// severity and a summary, the units pass systemd-analyze verify but for
// the binary they start not being installed here, and the example
// configuration reads for both commands.
func TestOpsFiles(t *testing.T) {
	rules := readAlertRules(t)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q in %s lacks alert, expr, severity or summary", r.Alert, g.Name)
			}
			if len(metricName.FindAllString(r.Expr, -1)) == 0 {
				t.Errorf("rule %s uses no Parley metric: %s", r.Alert, r.Expr)
			}
		}
	}
	for _, want := range []string{"ParleyOutboxStuck", "ParleyRefusalsSpiking", "ParleyRelayDiskFilling", "ParleyDHTRecordsDropping"} {
		if !strings.Contains(mustRead(t, "alerts.yml"), "alert: "+want+"\n") {
			t.Errorf("alerts.yml has no %s", want)
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
	opsExprs(t) // the dashboard parses and every panel has a query

	if promtool, err := exec.LookPath("promtool"); err == nil {
		out, err := exec.Command(promtool, "check", "rules", filepath.Join(opsDir, "alerts.yml")).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: the rules were checked as YAML only")
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		for _, unit := range []string{"parley.service", "parley-relay.service"} {
			out, _ := exec.Command(sa, "verify", filepath.Join(opsDir, unit)).CombinedOutput()
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if line != "" && !strings.Contains(line, "/usr/local/bin/parley is not executable") {
					t.Errorf("systemd-analyze verify %s: %s", unit, line)
				}
			}
		}
	}
	for _, unit := range []string{"parley.service", "parley-relay.service"} {
		text := mustRead(t, unit)
		for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=", "NoNewPrivileges=yes"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
	}
	for _, command := range []string{"run", "relay"} {
		if _, err := readConfigFile(filepath.Join(opsDir, "parley.toml"), command); err != nil {
			t.Errorf("parley.toml for %s: %v", command, err)
		}
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(opsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exportedFamilies scrapes a metrics page and returns its metric family
// names with their types.
func exportedFamilies(url string) (map[string]string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := make(map[string]string)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out, sc.Err()
}

// TestOpsMetricsExported runs a relay and two nodes bootstrapped from it
// (real processes, metrics on), makes traffic (a chat, a refused
// envelope), and checks that every metric the alert rules and the
// dashboard use is exported by the node or the relay.
func TestOpsMetricsExported(t *testing.T) {
	relay, relayMetrics := startRelayProc(t)
	a := startProc(t, "alice", t.TempDir(), nil, "", envBootstrap+"="+relay, envMetrics+"=127.0.0.1:0")
	m := metricsLine.FindStringSubmatch(a.stdout.String())
	if m == nil {
		t.Fatalf("alice printed no metrics URL; stdout:\n%s", a.stdout)
	}
	nodeMetrics := m[1]
	b := startProc(t, "bob", t.TempDir(), nil, "", envBootstrap+"="+relay)
	a.register("Alice")
	b.register("Bob")
	befriend(t, a, b)
	a.send(b.userID, "ops one")
	b.send(a.userID, "ops two")
	waitFor(t, waitTimeout, "both delivered", func() bool {
		return len(a.messages(b.userID)) == 2 && len(b.messages(a.userID)) == 2 &&
			split(a.messages(b.userID), "out")[0].Status == "delivered"
	})
	// Alice blocks Bob: his next message is refused, and counted.
	a.must("POST", "/api/v1/friends/"+b.userID+"/block", nil, http.StatusOK, nil)
	b.send(a.userID, "ops three")

	var used []string
	for _, e := range opsExprs(t) {
		used = append(used, metricName.FindAllString(e, -1)...)
	}
	var missing []string
	exported := func() bool {
		fams := map[string]string{}
		for _, url := range []string{nodeMetrics, relayMetrics} {
			f, err := exportedFamilies(url)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range f {
				fams[k] = v
			}
		}
		missing = missing[:0]
		for _, name := range used {
			if _, ok := fams[name]; ok {
				continue
			}
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if fams[base] == "histogram" {
				continue
			}
			missing = append(missing, name)
		}
		return len(missing) == 0
	}
	for deadline := time.Now().Add(waitTimeout); !exported(); time.Sleep(pollEvery) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not exported by the node or the relay: %v", waitTimeout, missing)
		}
	}
}
