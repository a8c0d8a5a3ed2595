package fsm

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"
)

// checkAppendKey checks that appendKey appends json.Marshal's bytes for
// k, after what dst held, and fails when json.Marshal fails.
func checkAppendKey(t *testing.T, k *Key) {
	t.Helper()
	want, wantErr := json.Marshal(k)
	prefix := []byte(`"before":`)
	var e keyEncoder
	got, err := e.appendKey(bytes.Clone(prefix), k)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("appendKey's error %v, json.Marshal's %v", err, wantErr)
	}
	if wantErr != nil {
		return
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("appendKey changed what dst held: %q", got)
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("appendKey gave\n%s\njson.Marshal\n%s", got, want)
	}
	if again, _ := json.Marshal(k); !bytes.Equal(again, want) {
		t.Fatalf("appendKey changed the key:\n%s\nwas\n%s", again, want)
	}
}

// fillAll sets every field v holds, as deep as depth, to a value that is
// not empty: strings that need escapes, negative numbers, slices and
// maps of one element.
func fillAll(v reflect.Value, depth int) {
	if depth == 0 || !v.CanSet() {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("a<b>&\"c\"\\\n\u2028é\xff")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(0.5)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillAll(v.Elem(), depth-1)
	case reflect.Struct:
		for i := range v.NumField() {
			fillAll(v.Field(i), depth-1)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillAll(v.Index(0), depth-1)
	case reflect.Array:
		for i := range v.Len() {
			fillAll(v.Index(i), depth-1)
		}
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		key := reflect.New(v.Type().Key()).Elem()
		val := reflect.New(v.Type().Elem()).Elem()
		fillAll(key, depth-1)
		fillAll(val, depth-1)
		m.SetMapIndex(key, val)
		v.Set(m)
	}
}

// keyFieldNamed is the entry of keyFields for the field named name in JSON.
// The cases below set the fields of one key type through it, as the
// table is how the encoder reaches them.
func keyFieldNamed(t *testing.T, name string) *keyField {
	for i := range keyFields {
		if keyFields[i].name == name {
			return &keyFields[i]
		}
	}
	t.Fatalf("keyFields has no %q", name)
	return nil
}

// TestAppendKeyIsMarshal: appendKey writes json.Marshal's bytes for keys
// with every field set, with none, with strings that json.Marshal
// escapes, with numbers at their limits and with empty and nil slices.
func TestAppendKeyIsMarshal(t *testing.T) {
	set := func(k Key, f func(k *Key)) Key { f(&k); return k }
	var full Key
	fillAll(reflect.ValueOf(&full).Elem(), 8)
	plain := Key{ID: "k1", Name: "db/password", Type: KeyTypeSecret, Version: 3, State: KeyActive,
		CreatedAt: 1_700_000_000_000_000_000, UpdatedAt: 1_700_000_000_000_000_001,
		R: []byte{1, 2, 3}, Sealed: []byte("sealed")}
	cases := map[string]Key{
		"every field": full,
		"none":        {},
		"plain":       plain,
		"public and ttl": set(plain, func(k *Key) {
			*keyFieldNamed(t, "public").byt(k) = []byte{0xff, 0xee}
			*keyFieldNamed(t, "assemble_ttl").num(k) = 5e9
		}),
		"html":           {Name: "a<b>&c", Type: "<script>", State: "&amp;"},
		"less than":      {Name: "a<b"},
		"greater than":   {Name: "a>b"},
		"ampersand":      {Name: "a&b"},
		"quote":          {Name: `say "hi"`},
		"backslash":      {Name: `a\b`, ID: `\u0041`},
		"controls":       {Name: "\x00\x01\b\f\n\r\t\x1f"},
		"delete":         {Name: "a\x7f"},
		"unit separator": {Name: "a\x1f"},
		"unicode":        {Name: "clé/ключ/鍵", ID: "\u2028\u2029"},
		"invalid utf-8":  {Name: "\xff\xfe", ID: "a\xc3", State: "\xed\xa0\x80"},
		"negative": set(Key{CreatedAt: -1, UpdatedAt: math.MinInt64, ExpiresAt: -9, Version: math.MaxUint64},
			func(k *Key) { *keyFieldNamed(t, "assemble_ttl").num(k) = -5 }),
		"largest": {CreatedAt: math.MaxInt64, UpdatedAt: math.MaxInt64, ExpiresAt: math.MaxInt64},
		"empty slices": set(Key{R: []byte{}, Sealed: []byte{}},
			func(k *Key) { *keyFieldNamed(t, "public").byt(k) = []byte{} }),
		"nil slices": {R: nil, Sealed: nil},
		"empty objects": set(Key{}, func(k *Key) {
			for _, fd := range keyFields {
				if fd.kind == 'j' {
					v := reflect.ValueOf(fd.any(k)).Elem()
					v.Set(reflect.New(v.Type().Elem()))
				}
			}
		}),
	}
	for name, k := range cases {
		t.Run(name, func(t *testing.T) { checkAppendKey(t, &k) })
	}
}

// TestJSONFieldOptionsFollowsEmbedding: the omitempty appendKey reads
// from Key's tags is found, as encoding/json finds fields, in structs a
// key embeds without a name, through a pointer or not.
func TestJSONFieldOptionsFollowsEmbedding(t *testing.T) {
	type inner struct {
		A string `json:"a,omitempty"`
		B string
	}
	type other struct {
		C int `json:"c"`
	}
	type outer struct {
		*inner
		other
		D      []byte `json:"d,omitempty"`
		E      int    `json:"-"`
		Named  other  `json:"named,omitempty"`
		hidden int
	}
	_ = outer{hidden: 1} // a field encoding/json does not write
	got := jsonFieldOptions(reflect.TypeFor[outer]())
	want := map[string]string{"a": "omitempty", "B": "", "c": "", "d": "omitempty", "named": "omitempty"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jsonFieldOptions gave %v, want %v", got, want)
	}
}

// FuzzAppendKeyIsMarshal: appendKey's bytes are json.Marshal's for any
// key. The fuzzer's values are set through keyFields, so every field the
// table has gets them: its strings, numbers and byte slices in turn
// (nils says which slices are nil rather than empty), and its objects
// what encoding/json decodes from obj.
func FuzzAppendKeyIsMarshal(f *testing.F) {
	f.Add("k1", "db/password", "secret", "active", uint64(3), int64(1), int64(-2), int64(0), int64(5e9),
		[]byte{1, 2, 3}, []byte("sealed"), []byte{}, uint8(4), []byte(`{}`))
	f.Add("", "a<b>&c\u2028", "\xff", "\x00\"\\", uint64(math.MaxUint64), int64(math.MinInt64), int64(math.MaxInt64),
		int64(-1), int64(0), []byte(nil), []byte{}, []byte{0}, uint8(1), []byte(`{"x":1}`))
	f.Add("id", "n", "t", "s", uint64(0), int64(0), int64(0), int64(0), int64(0),
		[]byte{}, []byte{}, []byte{}, uint8(0), []byte(`null`))
	f.Fuzz(func(t *testing.T, s0, s1, s2, s3 string, version uint64, i0, i1, i2, i3 int64,
		b0, b1, b2 []byte, nils uint8, obj []byte) {
		strs := []string{s0, s1, s2, s3}
		nums := []int64{i0, i1, i2, i3}
		byts := [][]byte{b0, b1, b2}
		var k Key
		k.Version = version
		var ns, ni, nb int
		for _, fd := range keyFields {
			switch fd.kind {
			case 's':
				*fd.str(&k) = strs[ns%len(strs)]
				ns++
			case 'i':
				*fd.num(&k) = nums[ni%len(nums)]
				ni++
			case 'b':
				b := byts[nb%len(byts)]
				if nils&(1<<(nb%8)) != 0 {
					b = nil
				} else if b == nil {
					b = []byte{}
				}
				*fd.byt(&k) = b
				nb++
			case 'j':
				json.Unmarshal(obj, fd.any(&k)) // what it cannot decode stays as it is
			}
		}
		checkAppendKey(t, &k)
	})
}

// TestFrozenWriteIsMarshal: what a frozen state writes is the base64 of
// json.Marshal's encoding of the state, over many blocks of
// stateWriteBlock, with names and fields that need escapes, and with its
// nonces nil, none, or many (names that need escapes too, expiries equal
// or negative).
func TestFrozenWriteIsMarshal(t *testing.T) {
	s := &State{Keys: make(map[string]*Key)}
	for i := range 3000 {
		name := fmt.Sprintf("db/%05d", i)
		if i%7 == 0 {
			name += "<&>\u2028\xff"
		}
		k := &Key{ID: fmt.Sprintf("id%d", i), Name: name, Type: KeyTypeSecret, Version: uint64(i), State: KeyActive,
			CreatedAt: int64(-i), R: bytes.Repeat([]byte{byte(i)}, i%40), Sealed: bytes.Repeat([]byte{1, 2, 3}, 20)}
		if i%11 == 0 {
			fillAll(reflect.ValueOf(k).Elem(), 6)
			k.Name = name
		}
		s.Keys[name] = k
	}
	checkFrozenWrite(t, s, 5*stateWriteBlock)
	s.Nonces = map[string]int64{}
	checkFrozenWrite(t, s, 5*stateWriteBlock)
	for i := range 20_000 {
		name := fmt.Sprintf("op%d/%032x", i%13, uint64(i)*0x9e3779b97f4a7c15)
		if i%9 == 0 {
			name += "\"<&>\u2028\xff\x01"
		}
		s.Nonces[name] = int64(i%500-100) * 1e9
	}
	checkFrozenWrite(t, s, 10*stateWriteBlock)
	// Without its keys: the nonces alone over many blocks.
	s.Keys = map[string]*Key{}
	s.reindex()
	checkFrozenWrite(t, s, 5*stateWriteBlock)
}

// checkFrozenWrite checks that s frozen writes the base64 of
// json.Marshal's encoding of s, at least min bytes of it.
func checkFrozenWrite(t *testing.T, s *State, min int) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < min {
		t.Fatalf("the state's encoding is %d bytes: not many blocks", len(want))
	}
	fr, err := s.freeze()
	if err != nil {
		t.Fatal(err)
	}
	checkFrozenWrites(t, fr, want)
}

// checkFrozenWrites checks that fr writes the base64 of want.
func checkFrozenWrites(t *testing.T, fr *frozen, want []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := fr.writeBase64To(&b); err != nil {
		t.Fatal(err)
	}
	got, err := base64.StdEncoding.DecodeString(b.String())
	if err != nil {
		t.Fatalf("what the frozen state wrote is not base64: %v", err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the frozen state wrote, from byte %d of %d,\n%.300s\nnot json.Marshal's\n%.300s", i, len(want), got[i:], want[i:])
	}
}
