package cli

import (
	"crypto/ed25519"
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
