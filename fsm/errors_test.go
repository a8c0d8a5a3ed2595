package fsm

import (
	"slices"
	"testing"

	"github.com/keyquorum/keyquorum/vocab"
)

// TestEveryCodeHasAKindANodeSends: every refusal reaches clients as one
// of the kinds every gateway has a status for, and only an unknown code
// is internal.
func TestEveryCodeHasAKindANodeSends(t *testing.T) {
	want := map[Code]vocab.Kind{
		CodeInvalid: vocab.KindInvalid, CodeNotFound: vocab.KindNotFound, CodeExists: vocab.KindExists,
		CodeDenied: vocab.KindDenied, CodeBadSignature: vocab.KindUnauthenticated, CodeReplay: vocab.KindUnauthenticated,
		CodeClockSkew: vocab.KindClockSkew, CodePending: vocab.KindPendingApproval, CodeConflict: vocab.KindConflict,
		CodeState:        vocab.KindConflict,
		CodeTokenExpired: vocab.KindTokenExpired, CodeTokenRevoked: vocab.KindTokenRevoked,
		CodeTokenWidened: vocab.KindTokenWidened, CodeTokenLacksCapability: vocab.KindTokenLacksCapability,
		CodeTokenUsedUp: vocab.KindTokenUsedUp,
	}
	for _, c := range Codes {
		k := c.Kind()
		if !slices.Contains(vocab.Kinds, k) || k == vocab.KindInternal {
			t.Errorf("code %q: kind %q is not a kind a node sends for a refusal", c, k)
		}
		if k != want[c] {
			t.Errorf("code %q: kind %q, want %q", c, k, want[c])
		}
	}
	if len(Codes) != len(want) {
		t.Errorf("%d codes, this test knows %d", len(Codes), len(want))
	}
	if k := Code("frobbed").Kind(); k != vocab.KindInternal {
		t.Errorf("an unknown code is %q, want internal", k)
	}
}
