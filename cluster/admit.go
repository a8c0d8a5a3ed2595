package cluster

import (
	"context"
	"crypto/x509"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/keyquorum/keyquorum/cluster/ratelimit"
	"github.com/keyquorum/keyquorum/fsm"
)

// The clients of the legacy gateways (kxd, Tang, Keyless SSL) cannot sign
// their requests, so the node that terminates one decides alone whether it
// may use a key, by the key's access rules (fsm.Access), before it signs
// the release as a node. Admission is that decision, the same for every
// gateway: each gateway only converts what its protocol knows of the
// client (a certificate chain, an address) into a GatewayClient.

// The rules Admission checks, in this order; AdmitError.Rule names the one
// that refused.
const (
	// RuleKey: the key exists, is not destroyed, and its Access names the
	// gateway. A refusal is of kind not_found, so the gateway reveals
	// nothing of keys that are not open to it.
	RuleKey = "key"
	// RuleHosts: Access.Hosts (kxd's allowed_hosts) is nil, or lists the
	// client's address, or a name that resolves to it.
	RuleHosts = "hosts"
	// RuleNetworks: Access.Networks is empty, or a prefix contains the
	// client's address.
	RuleNetworks = "networks"
	// RuleCertificate: for gateways whose clients authenticate with a
	// certificate (kxd, tlv), and for any key that lists ClientCerts, the
	// leaf the client proved it holds is allowed (fsm.AuthorizeClient). A
	// key with no ClientCerts allows no kxd or tlv client; a Tang client,
	// which has no certificate, may use only keys without ClientCerts.
	RuleCertificate = "certificate"
	// RuleRate: the client's address has not used the key more than
	// Access.RatePerMinute times in the last minute on this node.
	RuleRate = "rate"
)

// hostsResolveTimeout bounds the forward resolution of Access.Hosts names.
const hostsResolveTimeout = 5 * time.Second

// GatewayClient is what a legacy gateway knows of its client.
type GatewayClient struct {
	// Certs is the chain the client presented, leaf first: only the leaf,
	// whose key the client proved it holds, is an identity; the rest are
	// intermediates at most. Empty for a protocol without certificates.
	Certs []*x509.Certificate
	// Addr is the client's network address, as the node sees it.
	Addr netip.Addr
}

// Admitted is what Admission lets through: the key as this node applied
// it, and the certificate chains that allow the client's leaf (none when
// the rule did not apply).
type Admitted struct {
	Key    *fsm.Key
	Chains [][]*x509.Certificate
}

// AdmitError is Admission's refusal: the rule that refused, and the error
// with its kind (not_found for RuleKey, denied otherwise).
type AdmitError struct {
	Rule string
	Err  *Error
}

func (e *AdmitError) Error() string { return e.Err.Error() }
func (e *AdmitError) Unwrap() error { return e.Err }

// Admission checks legacy gateways' clients against keys' access rules.
// The zero value is ready to use; it keeps the rate buckets, so a gateway
// keeps one for its life.
type Admission struct {
	// Resolver resolves the names of Access.Hosts; nil is
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Now is the time certificates are checked at; nil is time.Now.
	Now func() time.Time

	limits ratelimit.Limits
}

// certGateways are the gateways whose clients always authenticate with a
// certificate.
var certGateways = []string{fsm.GatewayKxd, fsm.GatewayTLV}

// Admit decides whether client may use k (a key as this node applied it,
// nil if there is none) through gateway. It spends one of the client's
// uses of the key (RuleRate) only when every other rule allows it. A
// refusal is an *AdmitError.
func (a *Admission) Admit(ctx context.Context, gateway string, k *fsm.Key, client GatewayClient) (*Admitted, error) {
	if k == nil || k.State == fsm.KeyDestroyed || !k.Access().Allows(gateway) {
		name := "?"
		if k != nil {
			name = k.Name
		}
		return nil, refuse(RuleKey, KindNotFound, "no key %q is served by the %s gateway", name, gateway)
	}
	acc, addr := k.Access(), client.Addr.Unmap().WithZone("")
	if acc.Hosts != nil && !a.hostAllowed(ctx, acc.Hosts, addr) {
		return nil, refuse(RuleHosts, KindDenied, "%s is not one of the hosts key %q allows", addrString(addr), k.Name)
	}
	if len(acc.Networks) > 0 && !inNetworks(addr, acc.Networks) {
		return nil, refuse(RuleNetworks, KindDenied, "%s is outside the networks key %q allows", addrString(addr), k.Name)
	}
	var chains [][]*x509.Certificate
	if len(acc.ClientCerts) > 0 || slices.Contains(certGateways, gateway) {
		now := time.Now
		if a.Now != nil {
			now = a.Now
		}
		c, err := fsm.AuthorizeClient(acc.ClientCerts, client.Certs, now())
		if err != nil {
			return nil, refuse(RuleCertificate, KindDenied, "key %q: %v", k.Name, err)
		}
		chains = c
	}
	if err := a.limits.Take(k.Name, addr, acc.RatePerMinute); err != nil {
		e, ok := err.(*Error)
		if !ok {
			e = Errorf(KindDenied, "%v", err)
		}
		return nil, &AdmitError{Rule: RuleRate, Err: e}
	}
	return &Admitted{Key: k, Chains: chains}, nil
}

func refuse(rule string, kind Kind, format string, args ...any) *AdmitError {
	return &AdmitError{Rule: rule, Err: Errorf(kind, format, args...)}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "an unknown address"
	}
	return a.String()
}

func inNetworks(addr netip.Addr, networks []string) bool {
	return addr.IsValid() && slices.ContainsFunc(networks, func(n string) bool {
		p, err := netip.ParsePrefix(n)
		return err == nil && p.Contains(addr)
	})
}

// hostAllowed compares the client's address with hosts: addresses first,
// then names resolved forward, one after the other, until one matches.
func (a *Admission) hostAllowed(ctx context.Context, hosts []string, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	var names []string
	for _, h := range hosts {
		if ha, err := netip.ParseAddr(h); err == nil {
			if ha.Unmap().WithZone("") == addr {
				return true
			}
			continue
		}
		names = append(names, h)
	}
	if len(names) == 0 {
		return false
	}
	r := a.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, hostsResolveTimeout)
	defer cancel()
	for _, name := range names {
		addrs, err := r.LookupNetIP(ctx, "ip", name)
		if err != nil {
			continue
		}
		for _, x := range addrs {
			if x.Unmap().WithZone("") == addr {
				return true
			}
		}
	}
	return false
}
