package fsm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeCommandRemembersOnlyReleases: DecodeCommand decodes a release
// as json.Unmarshal does, hands each caller its own Command and
// ReleaseRequest (AuthorizeRelease changes the request's key name on its
// copy), and remembers neither a failure, another command type nor a
// large payload.
func TestDecodeCommandRemembersOnlyReleases(t *testing.T) {
	t.Parallel()
	payload := []byte(`{"type":"release","nonce":"cmVsZWFzZW1lbW8tdGVzdA==","issued_at":7,"release":{"key":"memo/a","op":"get","ephemeral":"AAAA"}}`)
	var want Command
	if err := json.Unmarshal(payload, &want); err != nil {
		t.Fatal(err)
	}
	first, err := DecodeCommand(payload)
	if err != nil || !reflect.DeepEqual(first, &want) {
		t.Fatalf("first decode: %+v, %v; want %+v", first, err, &want)
	}
	if releaseMemoHas(payload) == nil {
		t.Fatal("a release's command is not remembered")
	}
	first.Release.Key, first.Type = "changed", "changed"
	again, err := DecodeCommand(payload)
	if err != nil || !reflect.DeepEqual(again, &want) {
		t.Fatalf("a caller's change reached the next decode: %+v, %v", again, err)
	}
	if again == first || again.Release == first.Release {
		t.Fatal("two callers share a Command or a ReleaseRequest")
	}

	bad := []byte(`{"type":"release","release":{"key":`)
	if _, err := DecodeCommand(bad); err == nil || releaseMemoHas(bad) != nil {
		t.Fatalf("a payload that does not parse: %v, remembered %v", err, releaseMemoHas(bad) != nil)
	}
	write := []byte(`{"type":"revoke_key","nonce":"cmVsZWFzZW1lbW8tdGVzdA==","revoke_key":"memo/a"}`)
	if c, err := DecodeCommand(write); err != nil || c.RevokeKey != "memo/a" || releaseMemoHas(write) != nil {
		t.Fatalf("a write: %+v, %v, remembered %v", c, err, releaseMemoHas(write) != nil)
	}
	large := []byte(`{"type":"release","release":{"key":"memo/a","op":"rsa_share","input":"` + strings.Repeat("A", releaseMemoMaxPayload) + `"}}`)
	if c, err := DecodeCommand(large); err != nil || c.Release == nil || releaseMemoHas(large) != nil {
		t.Fatalf("a large release: %v, remembered %v", err, releaseMemoHas(large) != nil)
	}
}

// releaseMemoHas is what releaseMemo remembers for payload, or nil.
func releaseMemoHas(payload []byte) *Command {
	releaseMemo.Lock()
	defer releaseMemo.Unlock()
	return releaseMemo.m[string(payload)]
}

// FuzzDecodeCommand: DecodeCommand, first and remembered, decodes what
// json.Unmarshal decodes and fails where it fails.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"type":"release","nonce":"AAAAAAAAAAAAAAAAAAAAAA==","issued_at":1,"release":{"key":"a","op":"get","ephemeral":"AAAA"}}`))
	f.Add([]byte(`{"type":"release","release":null}`))
	f.Add([]byte(`{"type":"revoke_key","revoke_key":"a"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var want Command
		wantErr := json.Unmarshal(payload, &want)
		for range 2 {
			got, err := DecodeCommand(payload)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("DecodeCommand: %v; json.Unmarshal: %v", err, wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, &want) {
				t.Fatalf("DecodeCommand: %+v; json.Unmarshal: %+v", got, &want)
			}
		}
	})
}

// releaseBenchPayload is about an operator's release request (188 bytes).
var releaseBenchPayload = []byte(`{"type":"release","nonce":"AAAAAAAAAAAAAAAAAAAAAA==","issued_at":1796601623031306839,"release":{"key":"bench/secret","op":"get","ephemeral":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}`)

// BenchmarkDecodeCommand is a release's payload decoded again, as each
// check after the first on a node decodes it (DecodeCommand).
func BenchmarkDecodeCommand(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(releaseBenchPayload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeCommandJSON is the same payload by json.Unmarshal, as
// each check decoded it before.
func BenchmarkDecodeCommandJSON(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var c Command
		if err := json.Unmarshal(releaseBenchPayload, &c); err != nil {
			b.Fatal(err)
		}
	}
}
