package fsm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestDecodeKeyKnowsEveryField: decodeKeyFast's fields are Key's, in the
// order json.Marshal writes them, each read as its type is. A field added
// to Key without it would make every key that has it take the slow path
// (still encoding/json's result, FuzzDecodeKey), so this says to add it.
func TestDecodeKeyKnowsEveryField(t *testing.T) {
	var fields []reflect.StructField // as json.Marshal sees them: KeyDetail's in its place
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Key]()) {
		if !f.Anonymous {
			fields = append(fields, f)
		}
	}
	if len(fields) != len(keyFields) {
		t.Fatalf("Key has %d fields, decodeKeyFast knows %d", len(fields), len(keyFields))
	}
	for i, f := range fields {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		kf := keyFields[i]
		if kf.name != name {
			t.Errorf("field %d: Key's is %q, decodeKeyFast's %q", i, name, kf.name)
		}
		var k Key
		var got reflect.Value
		switch kf.kind {
		case 's':
			got = reflect.ValueOf(kf.str(&k))
		case 'i':
			got = reflect.ValueOf(kf.num(&k))
		case 'b':
			got = reflect.ValueOf(kf.byt(&k))
		case 'j':
			got = reflect.ValueOf(kf.any(&k))
		case 'u':
			got = reflect.ValueOf(&k.Version)
		}
		want := reflect.ValueOf(&k).Elem().FieldByIndex(f.Index).Addr() // after got, which made k's KeyDetail if f is one of its fields
		if kf.kind == 'i' && f.Type.Kind() == reflect.Int64 {
			want = want.Convert(reflect.TypeFor[*int64]())
		}
		if !got.IsValid() || got.Pointer() != want.Pointer() {
			t.Errorf("field %q: decodeKeyFast sets another field", name)
		}
		if kf.kind == 'j' && f.Type.Kind() != reflect.Pointer {
			t.Errorf("field %q: decodeKeyFast takes it for an object", name)
		}
	}
}

// decodeKeySeeds are keys as json.Marshal writes them, which the fast
// path takes, and near misses it must leave to encoding/json.
func decodeKeySeeds() [][]byte {
	full := &Key{ID: "id:00", Name: "db/a", Type: KeyTypeSecret, Version: 18446744073709551615, State: KeyActive,
		CreatedAt: -9223372036854775808, UpdatedAt: 9223372036854775807, ExpiresAt: 1, R: []byte{1, 2, 3}, Sealed: []byte{4, 5},
		KeyDetail: &KeyDetail{Public: []byte{}, AssembleTTL: time.Minute, Access: &Access{Gateways: []string{"g"}, Hosts: []string{}}, Tang: &TangKey{Kid: "k", Shares: []TangShare{{}}}, RSA: &RSAThresholdKey{Threshold: 2}, Frost: &FROSTKey{Epoch: 3}, Transit: &TransitKey{Cipher: "aes256-gcm96"}}}
	var out [][]byte
	for _, k := range []*Key{full, {}, {Name: "x"}, {Name: "é<>&\u2028\x7f\"\\"}, {Name: "db/b", KeyDetail: &KeyDetail{Access: &Access{Hosts: []string{"a\nb"}}}}} {
		b, err := json.Marshal(k)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	for _, s := range []string{
		`{}`, `{ }`, `null`, `{"name":"a"} `, `{"name" :"a"}`, `{"Name":"a"}`, `{"name":"a","name":"b"}`,
		`{"type":"secret","name":"a"}`, `{"name":"a","bogus":1}`, `{"name":null}`, `{"name":"a",}`, `{"name":"a"}}`,
		`{"version":-1}`, `{"version":01}`, `{"version":1.0}`, `{"version":1e3}`, `{"version":18446744073709551616}`,
		`{"created_at":-0}`, `{"created_at":-}`, `{"created_at":-9223372036854775809}`, `{"created_at":9223372036854775808}`,
		`{"r":""}`, `{"r":"AQ=="}`, `{"r":"AQ"}`, `{"r":"AQ==AQ=="}`, `{"r":"A\nQ=="}`, `{"r":[1,2]}`, `{"r":null}`,
		`{"access":{"hosts":["a"]},"tang":null}`, `{"access":{"hosts":["a"]}`, `{"access":{"hosts":["a"}]}}`,
		`{"access":{"Hosts":["a"],"hosts":["b"]}}`, `{"assemble_ttl":"1s"}`, `{"name":"a\u0000"}`, "{\"name\":\"a\x01\"}",
	} {
		out = append(out, []byte(s))
	}
	return out
}

// checkDecodeKey: decodeKey gives what json.Unmarshal gives, and its fast
// path, when it takes an encoding, too; and it takes every key as
// json.Marshal writes it when that is printable ASCII without escapes.
func checkDecodeKey(t *testing.T, b []byte) {
	var want Key
	werr := json.Unmarshal(b, &want)
	var fast Key
	took := decodeKeyFast(b, &fast, "db/a")
	if took {
		if werr != nil {
			t.Fatalf("the fast path takes %q, encoding/json refuses it: %v", b, werr)
		}
		if !reflect.DeepEqual(&fast, &want) {
			t.Fatalf("the fast path reads %q as %+v, encoding/json as %+v", b, fast, want)
		}
	}
	var got Key
	err := decodeKey(b, &got, "x")
	if (err == nil) != (werr == nil) {
		t.Fatalf("decodeKey(%q): %v; encoding/json: %v", b, err, werr)
	}
	if err == nil && !reflect.DeepEqual(&got, &want) {
		t.Fatalf("decodeKey reads %q as %+v, encoding/json as %+v", b, got, want)
	}
	if werr == nil && !took {
		if again, _ := json.Marshal(&want); bytes.Equal(again, b) && plainASCII(b) {
			t.Fatalf("the fast path does not take %q, as json.Marshal writes it", b)
		}
	}
}

// plainASCII says whether b is printable ASCII without escapes.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func TestDecodeKeyIsEncodingJSON(t *testing.T) {
	for _, b := range decodeKeySeeds() {
		t.Run("", func(t *testing.T) { checkDecodeKey(t, b) })
	}
	for _, b := range decodeKeySeeds()[:3] {
		var k Key
		if !decodeKeyFast(b, &k, "") {
			t.Errorf("the fast path does not take %s", b)
		}
	}
}

// FuzzDecodeKey: on any input, decodeKey and its fast path read a key as
// encoding/json does, or (the fast path) leave it to encoding/json; what
// json.Marshal writes in plain ASCII, the fast path reads.
func FuzzDecodeKey(f *testing.F) {
	for _, b := range decodeKeySeeds() {
		f.Add(b)
	}
	f.Fuzz(checkDecodeKey)
}

// stateScanSeeds are state encodings the scan must read as encoding/json
// does, or refuse.
var stateScanSeeds = []string{
	`{"applied":1,"keys":{"a":{"name":"a","type":"secret"},"b":{"name":"b"}}}`,
	`{"applied":1,"keys":{"a":{"name":"a","type":"secret"},"a":{"name":"b"}}}`,
	`{"applied":1,"Keys":{},"keys":{"a":{"name":"a"}}}`,
	` { "applied" : 1 , "keys" : { "a" : { "name" : "a" } , "b\u00e9" : {} } } `,
	`{"keys":null,"nonces":{"x":1}}`,
	`{"keys":{"a":null}}`,
	`{"keys":{}}`, `{}`, `{"keys":{},}`, `{"keys":{"a":{}},}`, `{"keys":{"a":{}}`, `{"keys":{"a" {}}}`,
	`{"keys":{"a":{}}} x`, `{"keys":[]}`, `{"keys":{"a":{"name":"a\"}"}}}`, `{"applied":1 2}`, `{"applied":}`,
	`{"applied":"1"}`, `{"nodes":{"n":{"id":"n"}},"nonces":{"a":1,"b":2}}`, `{"kEyS":{"a":{}}}`, "{\"keys\":{\"\\u212aeys\":{}}}",
	"{\"\u212aeys\":{\"a\":{}},\"keys\":{}}",
}

// checkStateScan: a state read by jsonScan and decodeStateFrom, a byte at
// a time or whole, is one json.Unmarshal reads the same, or is refused.
func checkStateScan(t *testing.T, data []byte) {
	st, _, err := decodeStateFrom(&jsonScan{r: iotest.OneByteReader(bytes.NewReader(data))})
	whole, _, werr := decodeStateFrom(&jsonScan{buf: data, eof: true})
	if (err == nil) != (werr == nil) {
		t.Fatalf("read a byte at a time: %v; whole: %v", err, werr)
	}
	if err != nil {
		return
	}
	want := emptyState()
	if err := json.Unmarshal(data, want); err != nil {
		t.Fatalf("the scan reads %q, encoding/json refuses it: %v", data, err)
	}
	fixMaps(want)
	g, _ := json.Marshal(st)
	g2, _ := json.Marshal(whole)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) || !bytes.Equal(g2, w) {
		t.Fatalf("the scan reads %q as %s (whole: %s), encoding/json as %s", data, g, g2, w)
	}
}

func TestStateScanIsEncodingJSON(t *testing.T) {
	for _, s := range stateScanSeeds {
		t.Run("", func(t *testing.T) { checkStateScan(t, []byte(s)) })
	}
}

// FuzzStateScan: on any input, the scan of a state agrees with
// encoding/json or refuses it (checkStateScan).
func FuzzStateScan(f *testing.F) {
	for _, s := range stateScanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkStateScan)
}

// checkQuotedBase64: a JSON string's content read by quotedBase64 in
// pieces is what encoding/json decodes the string to, or is refused.
func checkQuotedBase64(t *testing.T, s []byte, piece uint8) {
	r := bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(append(bytes.Clone(s), `",`...))), 16)
	q := &quotedBase64{r: r}
	var got []byte
	buf := make([]byte, 3+int(piece%32))
	var err error
	for {
		var n int
		n, err = q.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	// The string ends at its first quote.
	s, after, quoted := bytes.Cut(s, []byte{'"'})
	left := ","
	if quoted {
		left = string(after) + `",`
	}
	var want []byte
	werr := json.Unmarshal(append(append([]byte{'"'}, s...), '"'), &want)
	if err != io.EOF {
		if werr == nil && !bytes.ContainsAny(s, "\\\r\n\"") {
			t.Fatalf("quotedBase64 refuses %q: %v; encoding/json reads it", s, err)
		}
		return
	}
	if werr != nil {
		t.Fatalf("quotedBase64 reads %q, encoding/json refuses it: %v", s, werr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("quotedBase64 reads %q as %x, encoding/json as %x", s, got, want)
	}
	if rest, _ := io.ReadAll(r); string(rest) != left {
		t.Fatalf("quotedBase64 left %q after the string", rest)
	}
}

// FuzzQuotedBase64: the checkpoint's base64, decoded in pieces as it is
// read, is what encoding/json decodes, or is refused.
func FuzzQuotedBase64(f *testing.F) {
	for _, s := range []string{"", "AQ==", "AQID", "AQIDBA==", "AQ", "AQ==AQ==", "A=Q=", "e31=", "AQIDBAUGBwgJ", "AQ\\u003d=", "A\nQ=="} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(checkQuotedBase64)
}
