package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyquorum/keyquorum/agent"
	"github.com/keyquorum/keyquorum/client"
	"github.com/keyquorum/keyquorum/fsm"
)

// bootRows times what a booting machine waits for, process start to key
// on stdout: keyagent unlock against the cluster (client-side combine,
// QUIC first), next to stock clevis decrypt of an sss pin over 2 of the 3
// nodes' Tang gateways, in the same run on the same cluster.
func bootRows(ctx context.Context, c *client.Client, dir, keyagentBin string, apiAddrs []string, runs int) ([]row, error) {
	ca := filepath.Join(dir, "credentials/ca.pem")
	key, _, err := agent.EnsureMachineKey(filepath.Join(dir, "bench-machine.key"))
	if err != nil {
		return nil, err
	}
	pub := key.Public().(ed25519.PublicKey)
	if _, err := c.CreateSecret(ctx, "bench/luks", []byte("bench volume key"), time.Time{}); err != nil {
		return nil, err
	}
	if err := c.AddMachine(ctx, &fsm.Machine{ID: fsm.PrincipalID(pub), Name: "bench", PublicKey: pub, Keys: []string{"bench/luks"}}); err != nil {
		return nil, err
	}
	creds := c.Credentials()
	args := []string{"unlock", "--key", "bench/luks", "--ca", ca, "--key-file", filepath.Join(dir, "bench-machine.key"),
		"--cluster-id", creds.ClusterID, "--cluster-public-key", hex.EncodeToString(creds.ClusterKey)}
	for _, a := range apiAddrs {
		args = append(args, "--server", a)
	}
	agentTimes, err := timeRuns(runs, func() error { return exec.Command(keyagentBin, args...).Run() })
	if err != nil {
		return nil, fmt.Errorf("keyagent unlock: %w", err)
	}
	rows := []row{{"keyagent unlock, process start to key on stdout (median, max)", agentTimes, "-"}}

	if _, err := exec.LookPath("clevis"); err != nil {
		return append(rows, row{"clevis decrypt, sss 2 of 3 Tang servers", "clevis not installed", "-"}), nil
	}
	k, err := c.CreateTang(ctx, "bench/tang", nil)
	if err != nil {
		return nil, err
	}
	var pins []string
	for _, a := range apiAddrs {
		pins = append(pins, fmt.Sprintf(`{"url":"https://%s/tang/bench/tang","thp":%q}`, a, k.Tang().Thp))
	}
	cfg := `{"t":2,"pins":{"tang":[` + strings.Join(pins, ",") + `]}}`
	env := append(os.Environ(), "CURL_CA_BUNDLE="+ca)
	enc := exec.Command("clevis", "encrypt", "sss", cfg)
	enc.Env, enc.Stdin = env, strings.NewReader("bench volume key")
	jwe, err := enc.Output()
	if err != nil {
		return nil, fmt.Errorf("clevis encrypt sss: %w", err)
	}
	clevisTimes, err := timeRuns(runs, func() error {
		dec := exec.Command("clevis", "decrypt")
		dec.Env, dec.Stdin = env, strings.NewReader(string(jwe))
		return dec.Run()
	})
	if err != nil {
		return nil, fmt.Errorf("clevis decrypt: %w", err)
	}
	return append(rows, row{"clevis decrypt, sss 2 of 3 of the nodes' Tang gateways (median, max)", clevisTimes, "-"}), nil
}

// timeRuns runs f runs times and reports the median and the maximum.
func timeRuns(runs int, f func() error) (string, error) {
	var d []time.Duration
	for range runs {
		start := time.Now()
		if err := f(); err != nil {
			return "", err
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	return ms(d[len(d)/2]) + ", " + ms(d[len(d)-1]), nil
}
