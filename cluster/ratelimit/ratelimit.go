// Package ratelimit bounds how often one client address may use one key
// on one node: the RatePerMinute of a key's access rules (fsm.Access),
// which the admission check of the legacy gateways (cluster.Admission, for
// kxd, Tang and Keyless SSL) applies for clients that cannot sign their
// requests. Each node counts on its own.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// Limits are token buckets per key and client address: a bucket holds up
// to a minute's worth of uses and refills continuously. The zero value is
// ready to use.
type Limits struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// Take uses one of addr's uses of key; perMinute <= 0 means no limit. It
// returns an error of kind denied when the bucket is empty.
func (r *Limits) Take(key string, addr netip.Addr, perMinute int) error {
	if perMinute <= 0 {
		return nil
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buckets == nil {
		r.buckets = map[string]*bucket{}
	}
	if now.Sub(r.swept) > time.Minute {
		// A bucket untouched for a minute is full again: forget it.
		for k, b := range r.buckets {
			if now.Sub(b.at) > time.Minute {
				delete(r.buckets, k)
			}
		}
		r.swept = now
	}
	id := key + "\x00" + addr.Unmap().String()
	b := r.buckets[id]
	if b == nil {
		b = &bucket{tokens: float64(perMinute), at: now}
		r.buckets[id] = b
	}
	b.tokens = min(float64(perMinute), b.tokens+now.Sub(b.at).Minutes()*float64(perMinute))
	b.at = now
	if b.tokens < 1 {
		return api.Errorf(api.KindDenied, "%s used key %q more than %d times a minute", addr, key, perMinute)
	}
	b.tokens--
	return nil
}
