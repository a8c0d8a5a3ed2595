package fsm

import (
	"encoding/json"
	"testing"
)

// TestDecodedSecretKeyHasNoDetail: decoding a key from a checkpoint
// (decodeKey, by its fast path or encoding/json's) makes a KeyDetail only
// for a key that has one of its fields, so a restored plain secret key is
// as small as a created one.
func TestDecodedSecretKeyHasNoDetail(t *testing.T) {
	plain := &Key{ID: "id:1", Name: "db/a", Type: KeyTypeSecret, Version: 1, State: KeyActive, R: []byte{1}, Sealed: []byte{2}}
	opened := &Key{ID: "id:2", Name: "db/b", Type: KeyTypeSecret, Version: 1, State: KeyActive,
		KeyDetail: &KeyDetail{Access: &Access{Gateways: []string{GatewayKxd}}}}
	for _, want := range []*Key{plain, opened} {
		b, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		for _, fast := range []bool{true, false} {
			var k Key
			if fast {
				if !decodeKeyFast(b, &k, want.Name) {
					t.Fatalf("the fast path declined %s", b)
				}
			} else if err := json.Unmarshal(b, &k); err != nil {
				t.Fatal(err)
			}
			if (k.KeyDetail == nil) != (want.KeyDetail == nil) {
				t.Errorf("%s decoded (fast path: %v): detail %+v, want %+v", b, fast, k.KeyDetail, want.KeyDetail)
			}
		}
	}
}
