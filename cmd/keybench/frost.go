package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/keyquorum/keyquorum/client"
)

// frostRows measures signatures by quorum with an ed25519-frost key
// (docs/signing.md) through the cluster: the latency of n sequential
// signatures (p50, p99; the coordinator's stock of commitments makes most
// of them one round trip) and signatures per second from clients
// concurrent clients for the window. Every signature is checked with
// crypto/ed25519 by the client (SignMessage).
func frostRows(ctx context.Context, c *client.Client, n, clients int, window time.Duration) ([]row, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if _, err := c.CreateFROST(ctx, "bench/frost", priv, nil); err != nil {
		return nil, fmt.Errorf("creating the FROST key: %w", err)
	}
	clear(priv)
	msg := make([]byte, 64)
	rand.Read(msg)
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := c.SignMessage(ctx, "bench/frost", msg, ""); err != nil {
			return nil, fmt.Errorf("FROST signature: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	ok, errs := load(clients, window, func() error { _, err := c.SignMessage(ctx, "bench/frost", msg, ""); return err })
	return []row{
		{"FROST Ed25519 signature latency p50 (2 of 3 holders, one client)", ms(lat[len(lat)/2]), "-"},
		{"FROST Ed25519 signature latency p99", ms(lat[len(lat)*99/100]), "-"},
		{fmt.Sprintf("FROST Ed25519 signatures per second (%d clients, %v, %d errors)", clients, window, errs),
			fmt.Sprintf("%.0f", float64(ok)/window.Seconds()), "-"},
	}, nil
}
