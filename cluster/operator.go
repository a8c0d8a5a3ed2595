package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// Operators reach a node through the gateways that serve them (REST,
// gRPC), which each take what their wire gives (the TLS handshake's
// certificates, the posted command) and decide here, once, whether it is
// an operator's: AuthorizeOperator for the client certificate, CheckSigned
// for a command posted under it.

// AuthorizeOperator is the operator a client certificate authenticates.
// chain is what the client presented in its TLS handshake, the leaf first:
// only the leaf, whose key the client proved it holds, is an identity; the
// others are intermediates at most. The leaf must be a certificate of the
// cluster CA (svc's Membership) for client authentication, with the
// operator role, on an Ed25519 key that an operator the cluster knows
// holds (svc's Principal).
//
// A certificate authenticates the connection only: what an operator may
// do rests on the commands it signs, which every replica and share holder
// checks.
func AuthorizeOperator(ctx context.Context, svc Service, chain []*x509.Certificate) (*fsm.Operator, error) {
	caPEM, _ := svc.Membership()
	if caPEM == nil {
		return nil, Errorf(KindNotInitialized, "node %q is not part of a cluster yet: run keyctl cluster init or join", svc.Identity().NodeID)
	}
	if len(chain) == 0 {
		return nil, Errorf(KindUnauthenticated, "a client certificate of the cluster CA is required")
	}
	key := operatorChainKey(caPEM, chain)
	if !operatorChains.valid(key, now()) {
		ca, err := ParseCertPEM(caPEM)
		if err != nil {
			return nil, err
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := checkRole(chain, roots, x509.ExtKeyUsageClientAuth, RoleOperator); err != nil {
			var wrong *wrongRoleError
			if errors.As(err, &wrong) {
				return nil, Errorf(KindUnauthenticated, "client certificate is not an operator certificate")
			}
			return nil, Errorf(KindUnauthenticated, "client certificate: %v", err)
		}
		operatorChains.add(key, append([]*x509.Certificate{ca}, chain...))
	}
	pub, ok := chain[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, Errorf(KindUnauthenticated, "client certificate key is not Ed25519")
	}
	return svc.Principal(ctx, pub)
}

// CheckSigned decides whether a signed command posted by op, the operator
// of the client certificate (AuthorizeOperator), is one the call takes:
// its type is one of types, and op is its signer. The signature itself is
// checked by every replica and share holder, which the node serving the
// call cannot bypass; this check only keeps a caller from relaying
// another operator's command, or a command to the wrong call.
func CheckSigned(op *fsm.Operator, sg *fsm.Signed, types ...string) error {
	if op == nil {
		return Errorf(KindUnauthenticated, "a command needs the client certificate of its signer")
	}
	if sg == nil {
		return Errorf(KindInvalid, "a signed command is required")
	}
	var cmd struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil {
		return Errorf(KindInvalid, "signed payload is not a command: %v", err)
	}
	if !slices.Contains(types, cmd.Type) {
		if len(types) == 1 {
			return Errorf(KindInvalid, "this call takes a %q command, not %q", types[0], cmd.Type)
		}
		return Errorf(KindInvalid, "this call takes a command of type %s, not %q", strings.Join(types, ", "), cmd.Type)
	}
	if sg.Signer != op.ID {
		return Errorf(KindUnauthenticated, "command is signed by %s, the client certificate is %s's", sg.Signer, op.ID)
	}
	return nil
}

// operatorChains remembers the client certificate chains
// AuthorizeOperator's checkRole accepted, under which CA: every request
// on a connection presents the same chain, and verifying it costs as much
// as the rest of a release's checks on the coordinator. An entry holds
// while every certificate it was verified with (the CA's too) is within
// its validity period; after that, the chain is verified again. The
// operator the key names is looked up every time (svc.Principal), so a
// removed operator is refused at once.
var operatorChains = &chainMemo{ok: map[[sha256.Size]byte]validity{}}

// chainMemoSize bounds operatorChains: when full, it starts again empty.
const chainMemoSize = 1024

type validity struct{ notBefore, notAfter time.Time }

type chainMemo struct {
	mu sync.Mutex
	ok map[[sha256.Size]byte]validity
}

// operatorChainKey is the SHA-256 of the CA and the chain presented.
func operatorChainKey(caPEM []byte, chain []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, b := range append([][]byte{caPEM}, rawCerts(chain)...) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func rawCerts(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

func (m *chainMemo) valid(k [sha256.Size]byte, now time.Time) bool {
	m.mu.Lock()
	v, ok := m.ok[k]
	m.mu.Unlock()
	return ok && !now.Before(v.notBefore) && !now.After(v.notAfter)
}

// add remembers a chain that verified with certs (the CA's and the
// chain's): valid while all of them are.
func (m *chainMemo) add(k [sha256.Size]byte, certs []*x509.Certificate) {
	v := validity{notBefore: certs[0].NotBefore, notAfter: certs[0].NotAfter}
	for _, c := range certs[1:] {
		if c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ok) >= chainMemoSize {
		clear(m.ok)
	}
	m.ok[k] = v
}

// wrongRoleError is a certificate of the CA with another role.
type wrongRoleError struct{ got, want string }

func (e *wrongRoleError) Error() string {
	if e.got == "" {
		return fmt.Sprintf("the certificate carries no keyquorum role, not %q", e.want)
	}
	return fmt.Sprintf("the certificate has role %q, not %q", e.got, e.want)
}

// checkRole is the one check of a certificate's role, for peers on the
// node port (RoleNode) and operators (RoleOperator): chain[0] verifies up
// to roots, with the rest of chain as intermediates at most, for usage,
// and carries role. It returns the ID the certificate names.
func checkRole(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage, role string) (id string, err error) {
	if len(chain) == 0 {
		return "", errors.New("no certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", err
	}
	got, id, err := CertRole(leaf)
	if err != nil {
		return "", &wrongRoleError{want: role}
	}
	if got != role {
		return "", &wrongRoleError{got: got, want: role}
	}
	return id, nil
}
