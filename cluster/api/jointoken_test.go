package api

import (
	"strings"
	"testing"
)

// TestJoinTokenRoundTrip: a token parses back to its ID and a secret whose
// hash is the one made with it; malformed tokens are refused without the
// error repeating them.
func TestJoinTokenRoundTrip(t *testing.T) {
	token, id, hash, err := NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	gotID, secret, err := ParseJoinToken(token + "\n")
	if err != nil || gotID != id || len(secret) != 32 || len(hash) != 32 {
		t.Fatalf("ParseJoinToken(%q) = %q, %d bytes, %v", token, gotID, len(secret), err)
	}
	for _, bad := range []string{"", "kqjoin.", "nope." + token[7:], "kqjoin.0123.AAAA", "kqjoin.0123456789abcdeg." + token[24:], token[:len(token)-2]} {
		_, _, err := ParseJoinToken(bad)
		if err == nil {
			t.Errorf("ParseJoinToken(%q) accepted it", bad)
		} else if len(bad) > 24 && strings.Contains(err.Error(), bad[24:]) {
			t.Errorf("the error repeats the token's secret: %v", err)
		}
	}
}

func TestSameFingerprint(t *testing.T) {
	fp := Fingerprint([]byte("key"))
	for _, typed := range []string{fp, strings.ToUpper(fp), "sha256:" + fp, "SHA256:" + fp, " " + fp + "\n"} {
		if !SameFingerprint(typed, fp) {
			t.Errorf("%q does not match %q", typed, fp)
		}
	}
	if SameFingerprint(fp[:63], fp) || SameFingerprint("", fp) || SameFingerprint(Fingerprint([]byte("other")), fp) {
		t.Error("a different fingerprint matches")
	}
}
