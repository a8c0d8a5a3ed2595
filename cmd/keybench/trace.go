package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/cluster"
)

// traceReleases makes n sequential releases with one client, takes the
// steps each node recorded (cluster.TraceStep, from its debug port) and
// prints, for each step, in how many of the releases it ran, its median
// start after the client began and its median length, so the release's
// wall time can be read off step by step. The client's own parts come from
// httptrace: until its request was written, until the answer's first byte,
// and the rest (reading the answer, checking and combining).
func traceReleases(ctx context.Context, c *client.Client, dir string, base, n int) error {
	type release struct{ start, wrote, first, end time.Time }
	// Empty the nodes' traces of what came before.
	if _, err := nodeTraces(base); err != nil {
		return err
	}
	cpu, err := startCPU(dir)
	if err != nil {
		return err
	}
	rels := make([]release, 0, n)
	for range n {
		var r release
		tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest:         func(httptrace.WroteRequestInfo) { r.wrote = time.Now() },
			GotFirstResponseByte: func() { r.first = time.Now() },
		})
		r.start = time.Now()
		if _, err := c.Get(tctx, "bench/secret"); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		r.end = time.Now()
		rels = append(rels, r)
	}
	per, err := cpu.perOp(int64(n))
	if err != nil {
		return err
	}
	steps, err := nodeTraces(base)
	if err != nil {
		return err
	}
	// Each node step belongs to the release whose client span holds its
	// start: the releases are sequential.
	type key struct{ node, step string }
	starts := map[key][]float64{}
	lens := map[key][]float64{}
	counts := map[key][]float64{}
	msSince := func(a, b int64) float64 { return float64(b-a) / 1e6 }
	sort.Slice(steps, func(i, j int) bool { return steps[i].Start < steps[j].Start })
	j := 0
	var walls []float64
	for _, r := range rels {
		t0 := r.start.UnixNano()
		walls = append(walls, msSince(t0, r.end.UnixNano()))
		first := map[key]int64{}
		total := map[key]int64{}
		count := map[key]int{}
		for ; j < len(steps) && steps[j].Start < r.end.UnixNano(); j++ {
			s := steps[j]
			if s.Start < t0 {
				continue
			}
			k := key{s.Node, s.Step}
			if _, ok := first[k]; !ok {
				first[k] = s.Start
			}
			total[k] += s.End - s.Start
			count[k]++
		}
		client := []struct {
			step     string
			from, to time.Time
		}{
			{"sign, make its key, write the request", r.start, r.wrote},
			{"wait for the answer's first byte", r.wrote, r.first},
			{"read the answer, check, combine", r.first, r.end},
		}
		for _, p := range client {
			if p.from.IsZero() || p.to.IsZero() {
				continue
			}
			first[key{"client", p.step}] = p.from.UnixNano()
			total[key{"client", p.step}] = p.to.Sub(p.from).Nanoseconds()
			count[key{"client", p.step}] = 1
		}
		for k, f := range first {
			starts[k] = append(starts[k], msSince(t0, f))
			lens[k] = append(lens[k], float64(total[k])/1e6)
			counts[k] = append(counts[k], float64(count[k]))
		}
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	var keys []key
	for k := range starts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return med(starts[keys[a]]) < med(starts[keys[b]]) })
	fmt.Printf("%d sequential releases, one client: wall p50 %.2f ms; CPU per release (ms: client, n1, n2, n3) %s\n", n, med(walls), per)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tSTEP\tIN RELEASES\tTIMES (median)\tSTARTS AT (median ms)\tTAKES (median ms, all times)")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%d\t%.0f\t%.3f\t%.3f\n", k.node, k.step, len(starts[k]), med(counts[k]), med(starts[k]), med(lens[k]))
	}
	return w.Flush()
}

// nodeTraces takes the steps each node recorded since the last call.
func nodeTraces(base int) ([]cluster.TraceStep, error) {
	var all []cluster.TraceStep
	for i := 1; i <= 3; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/keyquorum/release-trace", base+10*i+7))
		if err != nil {
			return nil, err
		}
		var steps []cluster.TraceStep
		err = json.NewDecoder(resp.Body).Decode(&steps)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("node %d's trace: %w", i, err)
		}
		for k := range steps {
			steps[k].Step = strings.TrimSpace(steps[k].Step)
		}
		all = append(all, steps...)
	}
	return all, nil
}
