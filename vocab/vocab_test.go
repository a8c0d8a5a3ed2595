package vocab

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestEveryKindHasEveryTable: every kind a node sends has an HTTP status,
// a gRPC code and an exit code; every kind a client makes has an exit
// code; the tables hold no other kind.
func TestEveryKindHasEveryTable(t *testing.T) {
	seen := map[Kind]bool{}
	for _, k := range slices.Concat(Kinds, LocalKinds) {
		if seen[k] {
			t.Errorf("kind %q is listed twice", k)
		}
		seen[k] = true
	}
	for _, k := range Kinds {
		c, ok := wire[k]
		switch {
		case !ok:
			t.Errorf("kind %q a node sends has no row", k)
		case c.HTTP < 400 || c.HTTP > 599:
			t.Errorf("kind %q: HTTP status %d is not an error status", k, c.HTTP)
		case c.GRPC == 0 || c.GRPC > 16:
			t.Errorf("kind %q: gRPC code %d is not an error code", k, c.GRPC)
		case c.Exit == ExitOK || c.Exit == ExitUsage:
			t.Errorf("kind %q: exit code %d is success or usage", k, c.Exit)
		}
		if !k.Sent() {
			t.Errorf("kind %q a node sends is not Sent", k)
		}
		if k.HTTPStatus() != c.HTTP || k.GRPCCode() != c.GRPC || k.ExitCode() != c.Exit {
			t.Errorf("kind %q: the methods do not read its row", k)
		}
	}
	for _, k := range LocalKinds {
		c, ok := local[k]
		switch {
		case !ok:
			t.Errorf("kind %q a client makes has no exit code", k)
		case c.Exit == ExitOK || c.Exit == ExitUsage:
			t.Errorf("kind %q: exit code %d is success or usage", k, c.Exit)
		case k.Sent():
			t.Errorf("kind %q a client makes is Sent", k)
		case k.ExitCode() != c.Exit:
			t.Errorf("kind %q: ExitCode does not read its row", k)
		}
	}
	for k := range wire {
		if !slices.Contains(Kinds, k) {
			t.Errorf("the table has a row for %q, which Kinds does not list", k)
		}
	}
	for k := range local {
		if !slices.Contains(LocalKinds, k) {
			t.Errorf("the table has a row for %q, which LocalKinds does not list", k)
		}
	}
}

// TestTableIsWhatClientsSee pins the table: HTTP statuses and gRPC codes
// are those the gateways answered before it existed, and the exit codes
// are keyagent's documented ones, which keyctl now shares.
func TestTableIsWhatClientsSee(t *testing.T) {
	want := map[Kind]Codes{
		KindInvalid:              {400, 3, 1},
		KindNotFound:             {404, 5, 3},
		KindExists:               {409, 6, 1},
		KindDenied:               {403, 7, 5},
		KindUnauthenticated:      {401, 16, 4},
		KindConflict:             {409, 10, 1},
		KindNoQuorum:             {503, 14, 7},
		KindUnknownOutcome:       {504, 2, 11},
		KindNotInitialized:       {503, 9, 1},
		KindInternal:             {500, 13, 1},
		KindClockSkew:            {401, 16, 6},
		KindPendingApproval:      {403, 7, 9},
		KindTokenExpired:         {403, 7, 5},
		KindTokenRevoked:         {403, 7, 5},
		KindTokenWidened:         {403, 7, 5},
		KindTokenLacksCapability: {403, 7, 5},
		KindTokenUsedUp:          {403, 7, 5},
		KindWrongKey:             {400, 3, 1},
		KindTampered:             {400, 3, 1},
		KindUnreachable:          {0, 0, 8},
		KindApprovalTimeout:      {0, 0, 9},
		KindBadReply:             {0, 0, 10},
		KindConfig:               {0, 0, 1},
	}
	for k, w := range want {
		if got := CodesOf(k); got != w {
			t.Errorf("kind %q: %+v, want %+v", k, got, w)
		}
	}
	if n := len(Kinds) + len(LocalKinds); n != len(want) {
		t.Errorf("%d kinds, and this test pins %d: pin the new ones", n, len(want))
	}
}

func TestKindsOfNoRowAreInternal(t *testing.T) {
	for _, k := range []Kind{"", "frobbed", KindUnreachable, KindConfig} {
		if k.HTTPStatus() != 500 || k.GRPCCode() != GRPCInternal {
			t.Errorf("kind %q: HTTP %d, gRPC %d; want 500 and Internal for a kind no node sends", k, k.HTTPStatus(), k.GRPCCode())
		}
	}
	if c := Kind("frobbed").ExitCode(); c != ExitFailure {
		t.Errorf("unknown kind: exit %d, want %d", c, ExitFailure)
	}
	if Kind("frobbed").Sent() {
		t.Error("an unknown kind is Sent")
	}
}

func TestExitCodeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("plain"), ExitFailure},
		{Errorf(KindNoQuorum, "2 of 3 holders did not answer"), ExitNoQuorum},
		{fmt.Errorf("wrapped: %w", Errorf(KindNotFound, "no key k")), ExitNotFound},
		{Errorf(KindUnknownOutcome, "timed out"), ExitUnknownOutcome},
	} {
		if got := ExitCodeOf(tc.err); got != tc.want {
			t.Errorf("ExitCodeOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if Definite(Errorf(KindUnknownOutcome, "x")) || !Definite(Errorf(KindNoQuorum, "x")) || !Definite(errors.New("x")) {
		t.Error("Definite: only unknown_outcome leaves the outcome open")
	}
}

// TestWireBytes pins the JSON that crosses the wire: the error body every
// REST client parses and the unlock reply keyagent parses.
func TestWireBytes(t *testing.T) {
	b, err := json.Marshal(ErrorReply{Error: Errorf(KindNoQuorum, "2 of 3")})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"error":{"kind":"no_quorum","message":"2 of 3"}}`; string(b) != want {
		t.Errorf("error body %s, want %s", b, want)
	}
	b, err = json.Marshal(UnlockReply{ClusterID: "c", Key: "k", Version: 1, Epoch: 2, Threshold: 2,
		Poly: [][]byte{{1}}, R: []byte{2}, Sealed: []byte{3}, Partials: []SealedPartial{{Index: 1, R: []byte{4}, Sealed: []byte{5}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cluster_id":"c","key":"k","version":1,"epoch":2,"threshold":2,"poly":["AQ=="],"r":"Ag==","sealed":"Aw==",` +
		`"partials":[{"index":1,"r":"BA==","sealed":"BQ=="}]}`
	if string(b) != want {
		t.Errorf("unlock reply %s, want %s", b, want)
	}
}

// TestLabelsKeepTheirBytes: stored ciphertexts and signatures depend on
// the labels' exact bytes; no label is another's prefix, so no input made
// under one parses under another.
func TestLabelsKeepTheirBytes(t *testing.T) {
	want := []string{"keyquorum/command/v1", "keyquorum/machine/get-key/v1", "keyquorum/secret/v1",
		"keyquorum/release/v1", "keyquorum/partial/v1", "keyquorum/checkpoint/v1", "keyquorum/deal/v1",
		"keyquorum/exchange/v1", "keyquorum/tang-share/v1", "keyquorum/kem/v1", "keyquorum/dleq/v1",
		"keyquorum/hash-to-point/v1", "keyquorum/deal/key/v1", "keyquorum/deal/ad/v1",
		"keyquorum/p256-dleq/v1", "keyquorum/p256-share/v1", "keyquorum/clevis/v1", "keyquorum/possession/v1",
		"keyquorum/x25519-seal/v1", "keyquorum/frost-share/v1", "keyquorum/share/v1", "keyquorum/backup/v1",
		"keyquorum/rsa-share/v1", "keyquorum/key-id/v1", "keyquorum/transit/key/v1", "keyquorum/transit/aad/v1",
		"keyquorum/transit/share/v1", "keyquorum/transit/decrypt/v1",
		"keyquorum/transit/derive/v1", "keyquorum/transit/hmac/v1", "keyquorum/transit/export/v1",
		"keyquorum/transit/proof/v1", "keyquorum/share-seal/v1"}
	if !slices.Equal(Labels, want) {
		t.Errorf("labels %q, want %q", Labels, want)
	}
	for i, a := range Labels {
		if !strings.HasPrefix(a, "keyquorum/") || strings.ContainsRune(a, 0) {
			t.Errorf("label %q: want keyquorum/... without a zero byte", a)
		}
		for j, b := range Labels {
			if i != j && strings.HasPrefix(b, a) {
				t.Errorf("label %q is a prefix of %q", a, b)
			}
		}
	}
}

func TestMachineIDs(t *testing.T) {
	pub := make([]byte, 32)
	pub[0] = 7
	sum := sha256.Sum256(pub)
	id, kid := PrincipalID(pub), KlefkiMachineID(pub)
	if id != hex.EncodeToString(sum[:16]) || len(id) != 32 {
		t.Errorf("PrincipalID %q: want the hex of the first 16 bytes of the SHA-256", id)
	}
	if kid != "SHA256:"+base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("KlefkiMachineID %q", kid)
	}
	if !IsKlefkiMachineID(kid) || IsKlefkiMachineID(id) || IsKlefkiMachineID("SHA256:AAAA") {
		t.Error("IsKlefkiMachineID does not tell the forms apart")
	}
	other := make([]byte, 32)
	for _, tc := range []struct {
		id   string
		pub  []byte
		want bool
	}{
		{id, pub, true}, {kid, pub, true},
		{id, other, false}, {kid, other, false},
		{strings.ToUpper(id), pub, false}, {"SHA256:" + id, pub, false}, {"", pub, false},
	} {
		if got := SameMachine(tc.id, tc.pub); got != tc.want {
			t.Errorf("SameMachine(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
