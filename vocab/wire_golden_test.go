package vocab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/keyquorum/keyquorum/golden"
	"reflect"
	"slices"
	"testing"
)

// TestUnlockReplyGolden pins the blind release's reply: what a node sends
// keyagent (and the Go SDK) for a machine's unlock or an operator's
// release, from fixed inputs. The agent combines from it; a renamed or
// retyped field breaks every agent already installed in an initramfs.
func TestUnlockReplyGolden(t *testing.T) {
	fill := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	r := UnlockReply{
		ClusterID: "kq-test",
		Key:       "luks/root",
		Version:   3,
		Epoch:     2,
		Threshold: 2,
		Poly:      [][]byte{fill(0xA0, 32), fill(0xA1, 32)},
		R:         fill(0x01, 32),
		Sealed:    fill(0x02, 60),
		Partials: []SealedPartial{
			{Index: 1, Node: "node-1", R: fill(0x11, 32), Sealed: fill(0x12, 140)},
			{Index: 3, Node: "node-3", R: fill(0x31, 32), Sealed: fill(0x32, 140)},
		},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "unlock-reply.json", append(b, '\n'))
	var back UnlockReply
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, r) {
		t.Fatalf("the reply does not decode to itself: %+v (%v)", back, err)
	}
}

// TestErrorTableGolden pins the one table of error kinds: each kind's HTTP
// status, gRPC code and the exit code keyctl and keyagent exit with.
// Scripts test exit codes, and clients map statuses back to kinds.
func TestErrorTableGolden(t *testing.T) {
	var b bytes.Buffer
	fmt.Fprintln(&b, "# kind: HTTP status, gRPC code, exit code (keyctl and keyagent)")
	for _, k := range slices.Concat(Kinds, LocalKinds) {
		c := CodesOf(k)
		fmt.Fprintf(&b, "%s: %d, %d, %d\n", k, c.HTTP, c.GRPC, c.Exit)
	}
	golden.Check(t, "error-table.txt", b.Bytes())
}
