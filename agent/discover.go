package agent

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"

	"github.com/keyquorum/keyquorum/vocab"
)

// Resolver looks up DNS SRV records; *net.Resolver is one.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

// servers returns the nodes to try, in random order: the configured
// addresses and the targets of _keyquorum._tcp.SRV, without repeats. A
// failed SRV lookup is reported on the log and skipped when there are
// configured servers; without any server it is the error.
func (a *Agent) servers(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range a.cfg.Servers {
		addr, err := normalizeAddr(s)
		if err != nil {
			return nil, &Error{Kind: vocab.KindConfig, Message: err.Error()}
		}
		add(addr)
	}
	if a.cfg.SRV != "" {
		srvs, err := a.lookupSRV(ctx)
		if err != nil {
			if len(out) == 0 {
				return nil, err
			}
			a.logf("%v; trying the configured servers", err)
		}
		for _, s := range srvs {
			add(s)
		}
	}
	if len(out) == 0 {
		return nil, errorf(vocab.KindConfig, "no servers to try")
	}
	if !a.cfg.InOrder {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out, nil
}

func (a *Agent) lookupSRV(ctx context.Context) ([]string, error) {
	r := a.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeoutPerNode())
	defer cancel()
	_, srvs, err := r.LookupSRV(ctx, SRVService, SRVProto, a.cfg.SRV)
	if err != nil {
		return nil, errorf(vocab.KindUnreachable, "DNS SRV lookup of _%s._%s.%s: %v", SRVService, SRVProto, a.cfg.SRV, err)
	}
	var out []string
	for _, s := range srvs {
		target := strings.TrimSuffix(s.Target, ".")
		if target == "" || s.Port == 0 {
			continue // "." means the service is not offered there
		}
		out = append(out, net.JoinHostPort(target, strconv.Itoa(int(s.Port))))
	}
	if len(out) == 0 {
		return nil, errorf(vocab.KindUnreachable, "DNS SRV records of _%s._%s.%s name no server", SRVService, SRVProto, a.cfg.SRV)
	}
	return out, nil
}
