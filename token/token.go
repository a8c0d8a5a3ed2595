// Package token is keyquorum's capability tokens: Biscuit tokens
// (github.com/biscuit-auth/biscuit-go/v2) whose root key is a registered
// operator's Ed25519 key. An operator mints one for keys or key prefixes,
// with Keyvault's capability flags and an expiry (Mint); whoever holds it
// restricts it offline, with the token alone (Restrict: fewer flags, fewer
// keys, a shorter life, a caller network), and passes it on; a caller binds
// it to one request and seals it (Bind), so the node that relays the
// request can neither reuse it for another request nor restrict it
// further. Every share holder verifies the whole chain itself (Verify):
// the signatures from the operator's key down, every block's checks, the
// request binding, and the revocation ids against the state's revocations.
// Why Biscuit and not macaroons, and the limits on a token's evaluation:
// docs/tokens.md.
//
// A token is untrusted input on every holder: Verify bounds its size, its
// number of blocks, and its Datalog evaluation (facts, iterations, time),
// and turns a panic of the library into a refusal.
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/biscuit-auth/biscuit-go/v2"
	"github.com/biscuit-auth/biscuit-go/v2/datalog"
	"github.com/biscuit-auth/biscuit-go/v2/parser"
	"github.com/biscuit-auth/biscuit-go/v2/pb"
	"google.golang.org/protobuf/proto"

	"github.com/keyquorum/keyquorum/vocab"
)

// Keyvault's capability flags.
const (
	FlagGenKey   = "genkey"
	FlagDestroy  = "destroy"
	FlagRevoke   = "revoke"
	FlagEncrypt  = "encrypt"
	FlagDecrypt  = "decrypt"
	FlagSign     = "sign"
	FlagVerify   = "verify"
	FlagMAC      = "mac"
	FlagHash     = "hash"
	FlagGetInfo  = "getinfo"
	FlagList     = "list"
	FlagRestrict = "restrict"
	FlagDerive   = "derive"
	FlagExchange = "exchange"
	FlagImport   = "import"
)

// Flags are all the capability flags, the preset ALL.
var Flags = []string{FlagGenKey, FlagDestroy, FlagRevoke, FlagEncrypt, FlagDecrypt, FlagSign, FlagVerify,
	FlagMAC, FlagHash, FlagGetInfo, FlagList, FlagRestrict, FlagDerive, FlagExchange, FlagImport}

// ReadOnly is the preset READONLY: the flags that neither use a key's
// secret nor change anything.
var ReadOnly = []string{FlagVerify, FlagHash, FlagGetInfo, FlagList}

// Limits on what a holder accepts and evaluates.
const (
	// MaxBytes bounds a serialized token.
	MaxBytes = 16 << 10
	// MaxBlocks bounds the blocks after the authority block (restrictions
	// and the request binding).
	MaxBlocks = 16
	// MaxTTL bounds a token's life from its minting: a revocation is kept
	// that long, so it outlives every token it revokes.
	MaxTTL = 90 * 24 * time.Hour
	// maxFacts, maxIterations and maxDuration bound the Datalog
	// evaluation. Tokens made by this package need a few dozen facts and
	// two iterations; the time bound is far above what those bounds allow,
	// so that a loaded holder does not refuse a token another accepts.
	maxFacts      = 256
	maxIterations = 16
	maxDuration   = 2 * time.Second
	// noTimeLimit is the time bound of a Replicated evaluation: biscuit-go
	// always sets one, so it is set beyond any run the other bounds allow.
	noTimeLimit = 24 * time.Hour
	// The shape of a block (checkShape).
	maxBlockFacts   = 64
	maxBlockChecks  = 8
	maxCheckQueries = 32
	maxQueryOps     = 16
)

// requestLabel separates the digest of a bound request from any other.
const requestLabel = "keyquorum token request v1\x00"

// Scope is what a token is minted for: keys by exact name and by prefix
// (a prefix "" is every key), capability flags, and an expiry.
type Scope struct {
	Keys      []string
	Prefixes  []string
	Flags     []string
	ExpiresAt time.Time
}

// Restriction narrows a token. Zero fields restrict nothing.
type Restriction struct {
	Flags     []string // only these flags
	Keys      []string // only these keys (exact names) ...
	Prefixes  []string // ... or keys with these prefixes
	ExpiresAt time.Time
	// Network restricts the caller's address, as the node that terminates
	// the caller's connection sees it. IPv6 prefixes are a multiple of 4
	// bits long.
	Network netip.Prefix
	// MaxUses bounds how many requests the token, and every token
	// restricted from it, serves (1 to MaxUses): each use is recorded in
	// the log before any holder answers (docs/tokens.md).
	MaxUses int
}

// Request is what a holder checks a token against.
type Request struct {
	Operator string     // the root operator's ID, a holder's registered operator
	Flag     string     // the capability the operation needs
	Key      string     // the key it acts on
	Payload  []byte     // the signed request's payload, which the token must be bound to
	Now      time.Time  // the holder's clock
	Caller   netip.Addr // the caller's address, when the node that terminated its connection reported one
	// Replicated is set when every replica of the state machine must reach
	// the same answer (a log entry's token, checked in Apply, with Now the
	// entry's time): the evaluation then has no time limit that a loaded
	// replica could hit and another not. The shape, fact and iteration
	// bounds bound its work.
	Replicated bool
}

// Verified is what Verify learned of a token it accepted.
type Verified struct {
	// RevocationIDs are the token's chain, from the authority block to
	// the request binding, hex-encoded; revoking any of them revokes this
	// token and every token restricted from it.
	RevocationIDs []string
	// UseBounds are the bounds on uses its blocks set (Restriction.MaxUses).
	UseBounds []UseBound
}

// UseBound is a bound on a token's uses, which a block set: the block's
// revocation id names the uses the log counts.
type UseBound struct {
	ID  string // the revocation id of the block that set it, hex
	Max int
}

// MaxUses bounds Restriction.MaxUses: the log keeps one record per use.
const MaxUses = 10000

// Errors Verify returns, with a message that names what was wrong.
var (
	ErrMalformed = errors.New("malformed capability token")
	ErrForged    = errors.New("capability token not signed by its operator")
	ErrUnbound   = errors.New("capability token not bound to this request")
	ErrDenied    = errors.New("capability token does not allow this")
	ErrRevoked   = errors.New("capability token revoked")
	ErrExpired   = errors.New("capability token expired")
	// ErrWidened: a block after the authority states rights (facts of
	// the authority's predicates). Such facts would grant nothing, since
	// only the authority's reach the policies, but a token that tries is
	// refused as what it is.
	ErrWidened = errors.New("capability token widened")
)

// authorityPredicates are the predicates only the authority block states.
var authorityPredicates = []string{"operator", "expires", "key", "key_prefix", "flag"}

// Mint makes a token for scope, signed with the operator's key; op is the
// operator's ID, which every holder checks the token's root against.
func Mint(op string, key ed25519.PrivateKey, scope Scope, now time.Time) ([]byte, error) {
	if err := checkFlags(scope.Flags); err != nil {
		return nil, err
	}
	if len(scope.Keys) == 0 && len(scope.Prefixes) == 0 {
		return nil, fmt.Errorf("a token names keys or key prefixes")
	}
	if !scope.ExpiresAt.After(now) || scope.ExpiresAt.Sub(now) > MaxTTL {
		return nil, fmt.Errorf("a token expires after it is minted and within %v", MaxTTL)
	}
	var src strings.Builder
	params := parser.ParametersMap{"op": biscuit.String(op), "exp": biscuit.Date(scope.ExpiresAt.UTC().Truncate(time.Second))}
	src.WriteString("operator({op});\nexpires({exp});\ncheck if time($t), $t <= {exp};\n")
	add := func(pred, prefix string, values []string) {
		for i, v := range values {
			name := fmt.Sprintf("%s%d", prefix, i)
			params[name] = biscuit.String(v)
			fmt.Fprintf(&src, "%s({%s});\n", pred, name)
		}
	}
	add("key", "k", scope.Keys)
	add("key_prefix", "p", scope.Prefixes)
	add("flag", "f", scope.Flags)
	block, err := parser.FromStringBlockWithParams(src.String(), params)
	if err != nil {
		return nil, err
	}
	b := biscuit.NewBuilder(key)
	if err := b.AddBlock(block); err != nil {
		return nil, err
	}
	tok, err := b.Build()
	if err != nil {
		return nil, err
	}
	return tok.Serialize()
}

// Restrict appends a block of checks that narrow the token: it needs the
// token alone, no key and no node.
func Restrict(token []byte, r Restriction) ([]byte, error) {
	b, err := parse(token)
	if err != nil {
		return nil, err
	}
	var (
		src    strings.Builder
		params = parser.ParametersMap{}
		n      int
	)
	param := func(t biscuit.Term) string {
		n++
		name := fmt.Sprintf("v%d", n)
		params[name] = t
		return "{" + name + "}"
	}
	if len(r.Flags) > 0 {
		if err := checkFlags(r.Flags); err != nil {
			return nil, err
		}
		var alts []string
		for _, f := range r.Flags {
			alts = append(alts, "operation("+param(biscuit.String(f))+")")
		}
		fmt.Fprintf(&src, "check if %s;\n", strings.Join(alts, " or "))
	}
	if len(r.Keys) > 0 || len(r.Prefixes) > 0 {
		var alts []string
		for _, k := range r.Keys {
			alts = append(alts, "resource("+param(biscuit.String(k))+")")
		}
		for _, p := range r.Prefixes {
			alts = append(alts, "resource($k), $k.starts_with("+param(biscuit.String(p))+")")
		}
		fmt.Fprintf(&src, "check if %s;\n", strings.Join(alts, " or "))
	}
	if !r.ExpiresAt.IsZero() {
		fmt.Fprintf(&src, "check if time($t), $t <= %s;\n", param(biscuit.Date(r.ExpiresAt.UTC().Truncate(time.Second))))
	}
	if r.Network.IsValid() {
		check, err := networkCheck(r.Network, param)
		if err != nil {
			return nil, err
		}
		src.WriteString(check)
	}
	if r.MaxUses != 0 {
		if r.MaxUses < 1 || r.MaxUses > MaxUses {
			return nil, fmt.Errorf("a bound on uses is 1 to %d", MaxUses)
		}
		fmt.Fprintf(&src, "max_uses(%s);\n", param(biscuit.Integer(r.MaxUses)))
	}
	if src.Len() == 0 {
		return nil, fmt.Errorf("a restriction restricts something")
	}
	return appendBlock(b, src.String(), params, false)
}

// networkCheck is the check that the caller is in prefix: an IPv4 address
// as an integer in a range, an IPv6 address as hex with a prefix.
func networkCheck(p netip.Prefix, param func(biscuit.Term) string) (string, error) {
	p = p.Masked()
	if p.Addr().Is4() {
		lo := int64(binary.BigEndian.Uint32(p.Addr().AsSlice()))
		hi := lo + int64(1)<<(32-p.Bits()) - 1
		return fmt.Sprintf("check if caller_ipv4($ip), $ip >= %s, $ip <= %s;\n", param(biscuit.Integer(lo)), param(biscuit.Integer(hi))), nil
	}
	if p.Bits()%4 != 0 {
		return "", fmt.Errorf("an IPv6 network restriction is a multiple of 4 bits long, not /%d", p.Bits())
	}
	a := p.Addr().As16()
	return fmt.Sprintf("check if caller_ipv6($ip), $ip.starts_with(%s);\n", param(biscuit.String(hex.EncodeToString(a[:])[:p.Bits()/4]))), nil
}

// Bind binds the token to one request (the payload the caller sends) and
// seals it, so that no node that relays it can use it for another request
// or append to it.
func Bind(token, payload []byte) ([]byte, error) {
	b, err := parse(token)
	if err != nil {
		return nil, err
	}
	return appendParsed(b, bindingFor(RequestDigest(payload)), true)
}

// RequestDigest is what a token is bound to for a request's payload.
func RequestDigest(payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(requestLabel))
	h.Write(payload)
	return h.Sum(nil)
}

func appendBlock(b *biscuit.Biscuit, src string, params parser.ParametersMap, seal bool) ([]byte, error) {
	if b.BlockCount() >= MaxBlocks {
		return nil, fmt.Errorf("a token has at most %d blocks after its authority", MaxBlocks)
	}
	block, err := parser.FromStringBlockWithParams(src, params)
	if err != nil {
		return nil, err
	}
	return appendParsed(b, block, seal)
}

func appendParsed(b *biscuit.Biscuit, block biscuit.ParsedBlock, seal bool) ([]byte, error) {
	if b.BlockCount() >= MaxBlocks {
		return nil, fmt.Errorf("a token has at most %d blocks after its authority", MaxBlocks)
	}
	bb := b.CreateBlock()
	if err := bb.AddBlock(block); err != nil {
		return nil, err
	}
	out, err := b.Append(rand.Reader, bb.Build())
	if err != nil {
		return nil, err
	}
	if seal {
		if out, err = out.Seal(rand.Reader); err != nil {
			return nil, err
		}
	}
	return out.Serialize()
}

// Verify checks a token for a request, as every share holder does: the
// signature chain from root (the key of req.Operator), the request
// binding, that no revocation id is revoked, and that the Datalog of every
// block allows req. It never panics on any input.
func Verify(token []byte, root ed25519.PublicKey, req Request, revoked func(id string) bool) (v *Verified, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	c, err := checkChain(token, root, req.Operator)
	if err != nil {
		return nil, err
	}
	b, ids := c.b, c.ids
	limit := maxDuration
	if req.Replicated {
		limit = noTimeLimit
	}
	a, err := biscuit.NewVerifier(b, biscuit.WithWorldOptions(
		datalog.WithMaxFacts(maxFacts), datalog.WithMaxIterations(maxIterations), datalog.WithMaxDuration(limit)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for _, id := range ids {
		if revoked(id) {
			return nil, fmt.Errorf("%w: revocation id %s", ErrRevoked, short(id))
		}
	}
	d := RequestDigest(req.Payload)
	if at, err := c.blockOf(biscuit.Fact{Predicate: biscuit.Predicate{Name: "bound", IDs: []biscuit.Term{biscuit.Bytes(d)}}}); !c.sealed || err != nil || at != b.BlockCount() {
		return nil, ErrUnbound
	}
	a.AddFact(fact("operation", biscuit.String(req.Flag)))
	a.AddFact(fact("resource", biscuit.String(req.Key)))
	a.AddFact(fact("time", biscuit.Date(req.Now.UTC())))
	a.AddFact(fact("request", biscuit.Bytes(d)))
	a.AddFact(fact("root", biscuit.String(req.Operator)))
	if req.Caller.IsValid() {
		if ip := req.Caller.Unmap(); ip.Is4() {
			a.AddFact(fact("caller_ipv4", biscuit.Integer(int64(binary.BigEndian.Uint32(ip.AsSlice())))))
		} else {
			a16 := ip.As16()
			a.AddFact(fact("caller_ipv6", biscuit.String(hex.EncodeToString(a16[:]))))
		}
	}
	// The authority's operator is the root's, and its life within MaxTTL;
	// then the capability, for an exact key or a prefix.
	a.AddFact(fact("latest_expiry", biscuit.Date(req.Now.UTC().Add(MaxTTL))))
	rules := holderRules()
	for _, ch := range rules.checks {
		a.AddCheck(ch)
	}
	for _, p := range rules.policies {
		a.AddPolicy(p)
	}
	if err := a.Authorize(); err != nil {
		refusal := ErrDenied
		if strings.Contains(err.Error(), "check if time(") {
			refusal = ErrExpired // a failed life check: the token expired, whatever else failed
		}
		return nil, fmt.Errorf("%w: %s on key %q: %s", refusal, req.Flag, req.Key, why(err))
	}
	if c.boundsErr != nil {
		return nil, c.boundsErr
	}
	return &Verified{RevocationIDs: slices.Clone(ids), UseBounds: slices.Clone(c.bounds)}, nil
}

// checkChain decodes token and checks its signature chain from root, the
// key of operator op, or finds it in the memo of tokens that passed
// (memo.go); it memoizes only a token that passes.
func checkChain(token []byte, root ed25519.PublicKey, op string) (*checked, error) {
	var k memoKey
	if len(root) == ed25519.PublicKeySize {
		k = keyOf(token, root)
		if c := verified.get(k); c != nil {
			return c, nil
		}
	}
	b, sealed, err := parseChecked(token)
	if err != nil {
		return nil, err
	}
	if len(root) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: operator %s has no key", ErrForged, op)
	}
	if _, err := b.Authorizer(root); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrForged, op, err)
	}
	c := &checked{b: b, sealed: sealed, ids: chain(b)}
	c.bounds, c.boundsErr = UseBounds(token)
	verified.put(k, len(token), c)
	return c, nil
}

// UseBounds are the bounds on uses a token's blocks set, without
// verifying it: a coordinator records the uses of a request before it
// asks the holders, who verify the token and find the same bounds.
func UseBounds(token []byte) (bounds []UseBound, err error) {
	defer func() {
		if r := recover(); r != nil {
			bounds, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	if len(token) == 0 || len(token) > MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, not 1 to %d", ErrMalformed, len(token), MaxBytes)
	}
	var c pb.Biscuit
	if err := proto.Unmarshal(token, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var symbols []string
	for i, sb := range append([]*pb.SignedBlock{c.Authority}, c.Blocks...) {
		var blk pb.Block
		if err := proto.Unmarshal(sb.GetBlock(), &blk); err != nil {
			return nil, fmt.Errorf("%w: block %d: %v", ErrMalformed, i, err)
		}
		symbols = append(symbols, blk.Symbols...)
		max := 0
		for _, f := range blk.FactsV2 {
			if symbol(symbols, f.GetPredicate().GetName()) != "max_uses" {
				continue
			}
			terms := f.GetPredicate().GetTerms()
			if i == 0 || len(terms) != 1 {
				return nil, fmt.Errorf("%w: block %d: max_uses(N) is a restriction's, with one integer", ErrMalformed, i)
			}
			n, ok := terms[0].GetContent().(*pb.TermV2_Integer)
			if !ok || n.Integer < 1 || n.Integer > MaxUses {
				return nil, fmt.Errorf("%w: block %d: max_uses is an integer from 1 to %d", ErrMalformed, i, MaxUses)
			}
			if max == 0 || int(n.Integer) < max {
				max = int(n.Integer)
			}
		}
		if max > 0 {
			bounds = append(bounds, UseBound{ID: hex.EncodeToString(sb.GetSignature()), Max: max})
		}
	}
	return bounds, nil
}

// why is a short reason for a refusal: the library's message names the
// failed checks by their Datalog, which holds no secret.
func why(err error) string {
	switch {
	case errors.Is(err, biscuit.ErrNoMatchingPolicy), errors.Is(err, biscuit.ErrPolicyDenied):
		return "the token grants no such capability on that key"
	case errors.Is(err, datalog.ErrWorldRunLimitMaxFacts), errors.Is(err, datalog.ErrWorldRunLimitMaxIterations), errors.Is(err, datalog.ErrWorldRunLimitTimeout):
		return "its evaluation exceeds the limits: " + err.Error()
	}
	msg := err.Error()
	if len(msg) > 400 {
		msg = msg[:400] + "..."
	}
	return msg
}

func fact(name string, t biscuit.Term) biscuit.Fact {
	return biscuit.Fact{Predicate: biscuit.Predicate{Name: name, IDs: []biscuit.Term{t}}}
}

// holderRules are the checks and policies a holder adds to a token's: the
// authority's operator is the root's, and its life within MaxTTL; then
// the capability, for an exact key or a prefix. Parsed once: the parser
// is built per call, and costs milliseconds.
var holderRules = sync.OnceValue(func() (r struct {
	checks   []biscuit.Check
	policies []biscuit.Policy
}) {
	for _, s := range []string{`check if operator($o), root($o)`, `check if expires($e), latest_expiry($l), $e <= $l`} {
		c, err := parser.FromStringCheck(s)
		if err != nil {
			panic(err)
		}
		r.checks = append(r.checks, c)
	}
	for _, s := range []string{`allow if operation($f), flag($f), resource($k), key($k)`,
		`allow if operation($f), flag($f), resource($k), key_prefix($p), $k.starts_with($p)`} {
		p, err := parser.FromStringPolicy(s)
		if err != nil {
			panic(err)
		}
		r.policies = append(r.policies, p)
	}
	return r
})

// bindBlock is the block Bind appends, parsed once with a placeholder
// digest that bindingFor replaces.
var bindBlock = sync.OnceValue(func() biscuit.ParsedBlock {
	b, err := parser.FromStringBlockWithParams("bound({d});\ncheck if request({d});\n", parser.ParametersMap{"d": biscuit.Bytes{0}})
	if err != nil {
		panic(err)
	}
	return b
})

// bindingFor is the binding block for digest d.
func bindingFor(d []byte) biscuit.ParsedBlock {
	t := bindBlock()
	q := t.Checks[0].Queries[0]
	return biscuit.ParsedBlock{
		Facts:  []biscuit.Fact{fact(t.Facts[0].Name, biscuit.Bytes(d))},
		Checks: []biscuit.Check{{Queries: []biscuit.Rule{{Head: q.Head, Body: []biscuit.Predicate{{Name: q.Body[0].Name, IDs: []biscuit.Term{biscuit.Bytes(d)}}}}}}},
	}
}

// Info is what Inspect shows of a token without verifying it.
type Info struct {
	Blocks        int      // after the authority
	Sealed        bool     // bound to a request: nothing can be appended
	RevocationIDs []string // hex
	Code          string   // the Datalog of every block
}

// Inspect decodes a token without verifying it (keyctl token show).
func Inspect(token []byte) (info *Info, err error) {
	defer func() {
		if r := recover(); r != nil {
			info, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	b, sealed, err := parseChecked(token)
	if err != nil {
		return nil, err
	}
	return &Info{Blocks: b.BlockCount(), Sealed: sealed, RevocationIDs: chain(b), Code: b.String()}, nil
}

// parse decodes a token for appending to it.
func parse(token []byte) (b *biscuit.Biscuit, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	b, sealed, err := parseChecked(token)
	if err != nil {
		return nil, err
	}
	if sealed {
		return nil, fmt.Errorf("the token is bound to a request and sealed: restrict the token it was bound from")
	}
	return b, nil
}

// parseChecked decodes a token within the limits, and says whether it is
// sealed.
func parseChecked(token []byte) (*biscuit.Biscuit, bool, error) {
	if len(token) == 0 || len(token) > MaxBytes {
		return nil, false, fmt.Errorf("%w: %d bytes, not 1 to %d", ErrMalformed, len(token), MaxBytes)
	}
	var c pb.Biscuit
	if err := proto.Unmarshal(token, &c); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(c.Blocks) > MaxBlocks {
		return nil, false, fmt.Errorf("%w: %d blocks, at most %d", ErrMalformed, len(c.Blocks), MaxBlocks)
	}
	for _, sb := range append([]*pb.SignedBlock{c.Authority}, c.Blocks...) {
		if sb == nil || sb.NextKey == nil || sb.NextKey.Algorithm == nil || sb.NextKey.GetAlgorithm() != pb.PublicKey_Ed25519 {
			return nil, false, fmt.Errorf("%w: a block without an Ed25519 next key", ErrMalformed)
		}
	}
	var symbols []string // the table biscuit-go builds: every block's symbols, in order
	for i, sb := range append([]*pb.SignedBlock{c.Authority}, c.Blocks...) {
		var blk pb.Block
		if err := proto.Unmarshal(sb.Block, &blk); err != nil {
			return nil, false, fmt.Errorf("%w: block %d: %v", ErrMalformed, i, err)
		}
		if err := checkShape(&blk); err != nil {
			return nil, false, fmt.Errorf("%w: block %d: %v", ErrMalformed, i, err)
		}
		symbols = append(symbols, blk.Symbols...)
		if i == 0 {
			continue
		}
		for _, f := range blk.FactsV2 {
			if name := symbol(symbols, f.GetPredicate().GetName()); slices.Contains(authorityPredicates, name) {
				return nil, false, fmt.Errorf("%w: block %d states %s(...), which only the operator's authority block may", ErrWidened, i, name)
			}
		}
	}
	if c.Proof == nil || (c.Proof.GetNextSecret() == nil) == (c.Proof.GetFinalSignature() == nil) {
		return nil, false, fmt.Errorf("%w: no proof", ErrMalformed)
	}
	b, err := biscuit.Unmarshal(token)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return b, c.Proof.GetFinalSignature() != nil, nil
}

// checkShape bounds a block so that its evaluation is small whatever it
// holds: no rules (a rule's body joins facts, and its head makes new
// ones), checks whose queries each read one predicate (a query of k
// predicates over n facts tries n^k combinations, outside the library's
// time bound), and few facts, checks, queries and expression operations.
// What Mint, Restrict and Bind write fits in these bounds.
func checkShape(b *pb.Block) error {
	switch {
	case len(b.RulesV2) > 0:
		return fmt.Errorf("a token block holds no rules")
	case len(b.FactsV2) > maxBlockFacts:
		return fmt.Errorf("%d facts, at most %d", len(b.FactsV2), maxBlockFacts)
	case len(b.ChecksV2) > maxBlockChecks:
		return fmt.Errorf("%d checks, at most %d", len(b.ChecksV2), maxBlockChecks)
	}
	for _, c := range b.ChecksV2 {
		if len(c.Queries) > maxCheckQueries {
			return fmt.Errorf("a check of %d alternatives, at most %d", len(c.Queries), maxCheckQueries)
		}
		for _, q := range c.Queries {
			if len(q.Body) != 1 {
				return fmt.Errorf("a check query reads exactly one predicate, not %d", len(q.Body))
			}
			ops := 0
			for _, e := range q.Expressions {
				ops += len(e.Ops)
			}
			if ops > maxQueryOps {
				return fmt.Errorf("a check query of %d operations, at most %d", ops, maxQueryOps)
			}
		}
	}
	return nil
}

// symbol resolves a symbol index as biscuit-go does: below
// datalog.OFFSET, a default symbol; from it, the tokens' own in order.
func symbol(table []string, i uint64) string {
	if i < uint64(datalog.OFFSET) {
		if i < uint64(len(datalog.DEFAULT_SYMBOLS)) {
			return datalog.DEFAULT_SYMBOLS[i]
		}
		return ""
	}
	if j := i - uint64(datalog.OFFSET); j < uint64(len(table)) {
		return table[j]
	}
	return ""
}

// chain is the token's revocation ids, hex.
func chain(b *biscuit.Biscuit) []string {
	var ids []string
	for _, id := range b.RevocationIds() {
		ids = append(ids, hex.EncodeToString(id))
	}
	return ids
}

// short is a revocation id's first 16 hex digits, for messages and audit.
func short(id string) string { return id[:min(len(id), 16)] }

// Short is the form audit records and messages name a revocation id in.
func Short(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return strings.Join(out, ",")
}

// ParseFlags reads a comma-separated list of flags and presets (ALL,
// READONLY), as keyctl takes them.
func ParseFlags(s string) ([]string, error) {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		switch f = strings.TrimSpace(f); strings.ToUpper(f) {
		case "":
		case "ALL":
			out = append(out, Flags...)
		case "READONLY":
			out = append(out, ReadOnly...)
		default:
			out = append(out, strings.ToLower(f))
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return out, checkFlags(out)
}

func checkFlags(flags []string) error {
	if len(flags) == 0 {
		return fmt.Errorf("no capability flags")
	}
	for _, f := range flags {
		if !slices.Contains(Flags, f) {
			return vocab.Errorf(vocab.KindInvalid, "unknown capability flag %q (one of %s, ALL, READONLY)", f, strings.Join(Flags, ", "))
		}
	}
	return nil
}

// The text form of a token, as keyctl prints and reads it: the root
// operator's ID, a dot, and the token in unpadded base64url. The ID tells
// a node which operator's key to verify the token with, in one look-up;
// it is not trusted: the token must verify under that operator's key and
// its authority block must name the same operator.

// Format is the text form of tok, minted by operator op.
func Format(op string, tok []byte) string {
	return op + "." + base64.RawURLEncoding.EncodeToString(tok)
}

// ParseText reads the text form.
func ParseText(s string) (op string, tok []byte, err error) {
	op, enc, ok := strings.Cut(strings.TrimSpace(s), ".")
	if !ok || op == "" {
		return "", nil, fmt.Errorf("%w: the text form is OPERATOR.BASE64URL", ErrMalformed)
	}
	if tok, err = base64.RawURLEncoding.DecodeString(enc); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(tok) == 0 || len(tok) > MaxBytes {
		return "", nil, fmt.Errorf("%w: %d bytes, not 1 to %d", ErrMalformed, len(tok), MaxBytes)
	}
	return op, tok, nil
}
