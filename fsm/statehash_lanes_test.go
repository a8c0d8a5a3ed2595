package fsm

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestLanesAddAndSubtractModulo16Bits: four lanes added or subtracted in
// one word give what each 16-bit lane gives alone, carries and borrows
// included (every lane at 0, 0x7fff, 0x8000 and 0xffff, and random ones).
func TestLanesAddAndSubtractModulo16Bits(t *testing.T) {
	edges := []uint16{0, 1, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff}
	word := func(l [4]uint16) uint64 {
		var b [8]byte
		for k, v := range l {
			binary.LittleEndian.PutUint16(b[2*k:], v)
		}
		return binary.LittleEndian.Uint64(b[:])
	}
	check := func(a, b [4]uint16) {
		var sum, diff [4]uint16
		for k := range a {
			sum[k], diff[k] = a[k]+b[k], a[k]-b[k]
		}
		if got := addLanes(word(a), word(b)); got != word(sum) {
			t.Fatalf("%x + %x: %x, want %x", a, b, got, word(sum))
		}
		if got := subLanes(word(a), word(b)); got != word(diff) {
			t.Fatalf("%x - %x: %x, want %x", a, b, got, word(diff))
		}
	}
	for _, x := range edges {
		for _, y := range edges {
			check([4]uint16{x, y, x, y}, [4]uint16{y, x, x, y})
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		var a, b [4]uint16
		for k := range a {
			a[k], b[k] = uint16(r.Uint32()), uint16(r.Uint32())
		}
		check(a, b)
	}
}

// TestExpansionIsAESCTR: an entry's expansion is the AES-256-CTR
// keystream under its digest from a zero IV, as statehash.go says: here
// the first and the last block, encrypted one at a time.
func TestExpansionIsAESCTR(t *testing.T) {
	var d [32]byte
	for i := range d {
		d[i] = byte(i)
	}
	var buf [2 * ltLanes]byte
	expand(&d, &buf)
	block := aesBlockForTest(t, d[:])
	for _, n := range []uint64{0, 2*ltLanes/16 - 1} {
		var ctr, want [16]byte
		binary.BigEndian.PutUint64(ctr[8:], n)
		block.Encrypt(want[:], ctr[:])
		if got := buf[16*n : 16*n+16]; string(got) != string(want[:]) {
			t.Errorf("block %d: %x, want %x", n, got, want)
		}
	}
}

func aesBlockForTest(t *testing.T, key []byte) cipher.Block {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
