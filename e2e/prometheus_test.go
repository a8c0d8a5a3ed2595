package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrometheusScrapesTheCluster: Debian's prometheus scrapes the
// --metrics-addr of three keyd processes, and its HTTP API gives back
// each node's failure tolerance (1: three nodes, t=2) and the release a
// node coordinated; each node's /ready answers 200.
func TestPrometheusScrapesTheCluster(t *testing.T) {
	t.Parallel()
	needPrograms(t, "prometheus")
	c := startCluster(t, 3)
	c.mustKeyctl(1, "key", "create", "prom/s", "--bytes", "32")
	c.mustKeyctl(2, "key", "get", "prom/s")

	var targets []string
	for i := 1; i <= 3; i++ {
		addr := c.gatewayAddr(i, "metrics")
		targets = append(targets, fmt.Sprintf("'%s'", addr))
		resp, err := http.Get("http://" + addr + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("node %d /ready: %d %s", i, resp.StatusCode, body)
		}
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: keyquorum
    static_configs:
      - targets: [`+strings.Join(targets, ", ")+`]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := closedPort(t)
	out := &syncBuffer{}
	cmd := exec.Command("prometheus", "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", out.String())
		}
	})
	query := func(q string) (map[string]string, error) {
		resp, err := http.Get("http://" + listen + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return nil, err
		}
		if r.Status != "success" {
			return nil, fmt.Errorf("query %s: status %s", q, r.Status)
		}
		got := map[string]string{}
		for _, s := range r.Data.Result {
			got[s.Metric["instance"]] = fmt.Sprint(s.Value[1])
		}
		return got, nil
	}
	eventually(t, 90*time.Second, "prometheus has every node's failure tolerance", func() (bool, string) {
		got, err := query(`keyquorum_failure_tolerance{limit="release"}`)
		if err != nil {
			return false, err.Error()
		}
		if len(got) != 3 {
			return false, fmt.Sprint(got)
		}
		for _, v := range got {
			if v != "1" {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
	eventually(t, 30*time.Second, "prometheus has the release node 2 coordinated", func() (bool, string) {
		got, err := query(`sum(keyquorum_operations_total{op="release",key_type="secret",gateway="https",result="ok"})`)
		if err != nil {
			return false, err.Error()
		}
		return got[""] == "1", fmt.Sprint(got)
	})
}
