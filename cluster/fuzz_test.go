package cluster

import (
	"encoding/json"
	"testing"

	"github.com/keyquorum/keyquorum/fsm"
)

// FuzzCheckDeal feeds arbitrary deal bytes, as a dealer's log entry
// carries them, to the checks every replica runs in Apply: they must
// refuse, never panic, and accept only what also combines.
func FuzzCheckDeal(f *testing.F) {
	f.Add([]byte(`{"Dealer":1,"Commits":[],"Shares":[]}`))
	f.Add([]byte(`{"Dealer":1,"Commits":["AAAA"],"Shares":[{"Index":1,"Ciphertext":"AA=="}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"Unknown":1}`))
	round := &fsm.Reshare{Round: 7, Fresh: true, Threshold: 1, Needed: 1,
		Members: []fsm.Member{{NodeID: "n1", Index: 1, EncKey: make([]byte, 32)}}, Dealers: []uint32{1}}
	f.Fuzz(func(t *testing.T, deal []byte) {
		var c dealChecker
		if err := c.CheckDeal(round, nil, 1, deal); err != nil {
			return
		}
		r := *round
		r.Deals = []fsm.Deal{{Dealer: 1, Deal: deal}}
		if _, err := c.CombinePublic(&r); err != nil {
			b, _ := json.Marshal(deal)
			t.Fatalf("a deal passed the checks but does not combine: %s: %v", b, err)
		}
	})
}

// FuzzVerifyBackup feeds arbitrary bytes, as a backup file holds them, to
// the checks keyd snapshot restore runs: they must refuse, never panic.
// Nothing without a valid certificate or history under the pin passes.
func FuzzVerifyBackup(f *testing.F) {
	f.Add([]byte(`{"format":"keyquorum-backup/1","sha256":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","snapshot":""}`))
	f.Add([]byte(`{"format":"keyquorum-backup/1","snapshot":"eyJ2ZXJzaW9uIjoxLCJlbnRyaWVzIjpbXX0="}`))
	f.Add([]byte(`null`))
	pin := make([]byte, 32)
	pin[0] = 1
	f.Fuzz(func(t *testing.T, data []byte) {
		if info, _, err := VerifyBackup(data, pin); err == nil {
			t.Fatalf("a backup verified under a key nobody holds: %+v", info)
		}
	})
}
