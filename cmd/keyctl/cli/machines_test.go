package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// TestMachineIDInEitherForm: keyctl's machine and session commands take a
// machine's ID as keyctl shows it or as klefki's tools show it, and send
// the cluster the one it knows.
func TestMachineIDInEitherForm(t *testing.T) {
	var list []*fsm.Machine
	for i := range byte(2) {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = i
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		list = append(list, &fsm.Machine{ID: vocab.PrincipalID(pub), Name: "m", PublicKey: pub})
	}
	second := list[1]
	for _, in := range []string{second.ID, vocab.KlefkiMachineID(second.PublicKey)} {
		got, err := resolveMachineID(in, list)
		if err != nil || got != second.ID {
			t.Errorf("resolveMachineID(%q) = %q, %v; want %q", in, got, err, second.ID)
		}
	}
	// An ID of keyctl's form that names no machine goes to the cluster
	// unchanged, which answers for it.
	if got, err := resolveMachineID("00112233445566778899aabbccddeeff", list); err != nil || got != "00112233445566778899aabbccddeeff" {
		t.Errorf("unknown hex ID: %q, %v", got, err)
	}
	stranger := vocab.KlefkiMachineID([]byte("not a registered key"))
	if _, err := resolveMachineID(stranger, list); vocab.KindOf(err) != vocab.KindNotFound {
		t.Errorf("unknown klefki ID: %v, want not_found", err)
	}
}

// TestPasskeyAddOrigins: keyctl passkey add --origin lists the console
// origins instead of the request's; an origin outside the passkey's
// relying party ID (where a browser never asserts for it) or not
// https://host[:port] is refused before anything is sent, naming it.
func TestPasskeyAddOrigins(t *testing.T) {
	t.Setenv("KEYQUORUM_ADDR", "127.0.0.1:1")
	b, err := json.Marshal(&fsm.Passkey{ID: "Y3JlZA", Operator: "op", Name: "phone", Algorithm: fsm.AlgES256, PublicKey: []byte{1},
		RPID: "example.com", Origins: []string{"https://keys1.example.com:8443"}})
	if err != nil {
		t.Fatal(err)
	}
	req := base64.RawURLEncoding.EncodeToString(b)
	for _, bad := range []string{"https://keys.other.test:8443", "http://keys2.example.com:8443", "https://keys2.example.com:8443/ui/",
		"https://notexample.com", "https://keys2.example.com:0"} {
		code, _, errb := keyctl(t, "passkey", "add", req, "--origin", "https://keys2.example.com:8443", "--origin", bad)
		if code != ExitUsage || !strings.Contains(errb, strconv.Quote(bad)) {
			t.Errorf("--origin %s: exit %d, stderr %q; want a usage error naming it", bad, code, errb)
		}
	}
	// Good origins pass the check: keyctl goes on to the cluster, which
	// is not there.
	code, _, errb := keyctl(t, "passkey", "add", req, "--origin", "https://keys2.example.com:8443", "--origin", "https://example.com")
	if code == ExitUsage {
		t.Errorf("good origins: a usage error %q", errb)
	}
}
