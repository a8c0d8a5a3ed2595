package fsm

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Encoding a key without encoding/json's reflection.
//
// Writing a snapshot encodes every key of the checkpoint's state: at
// 100,000 keys json.Marshal of each key and of its name, with the garbage
// it made (six allocations a key), was about two thirds of the CPU the
// write cost (BenchmarkSnapWrite), on machines whose cores the replicas
// and their clients share. appendKey
// writes the same bytes from keyFields, the table decodeKeyFast reads
// keys with, so the two directions cannot disagree on a field or its
// order; the fields whose values are objects still go through
// json.Marshal. Its result is always json.Marshal's
// (FuzzAppendKeyIsMarshal).

// keyFieldHeads are keyFields' names as json.Marshal writes them before
// their values: the quoted name and a colon.
var keyFieldHeads = func() (h [len(keyFields)][]byte) {
	for i, fd := range keyFields {
		name, err := json.Marshal(fd.name)
		if err != nil {
			panic(err)
		}
		h[i] = append(name, ':')
	}
	return h
}()

// keyFieldOmitEmpty says which of keyFields json.Marshal leaves out when
// they are empty: those whose tags on Key say omitempty. It is read from
// the tags so that they stay the one place that says it.
var keyFieldOmitEmpty = func() (o [len(keyFields)]bool) {
	tags := jsonFieldOptions(reflect.TypeFor[Key]())
	for i, fd := range keyFields {
		opts, ok := tags[fd.name]
		if !ok {
			panic("fsm: keyFields names " + fd.name + ", which Key's JSON has not")
		}
		for opt := range strings.SplitSeq(opts, ",") {
			switch opt {
			case "":
			case "omitempty":
				o[i] = true
			default: // omitzero, string: appendKey would not write what json.Marshal does
				panic("fsm: Key's field " + fd.name + " has the JSON option " + opt + ", which appendKey does not know")
			}
		}
	}
	return o
}()

// jsonFieldOptions gives the options of the JSON tag of each field
// json.Marshal writes for the struct type t, by the name it writes it
// under: the fields of t and, as encoding/json does, those of the structs
// it embeds without a name.
func jsonFieldOptions(t reflect.Type) map[string]string {
	opts := make(map[string]string)
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for n, o := range jsonFieldOptions(et) {
					opts[n] = o
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		opts[name] = opt
	}
	return opts
}

// keyEncoder appends keys' encodings. It is not safe for concurrent use.
type keyEncoder struct {
	// key is a copy of the key being encoded, which appendKey reads
	// through keyFields' accessors. Those are the decoder's too, which
	// sets fields through them: one that had to make what holds its
	// field (a struct behind a pointer) would otherwise change a key of
	// the state, which is never changed in place (editKey) and is read
	// by the FSM's applies while a snapshot is written.
	key Key
	// noDetail is the KeyDetail the copy of a key without one points to,
	// so that the accessors of its fields find one without making it.
	noDetail KeyDetail
}

// appendKey appends json.Marshal's encoding of k to dst.
func (e *keyEncoder) appendKey(dst []byte, k *Key) ([]byte, error) {
	e.key = *k
	if e.key.KeyDetail == nil {
		e.noDetail = KeyDetail{}
		e.key.KeyDetail = &e.noDetail
	}
	k = &e.key
	dst = append(dst, '{')
	empty := true // no field written yet
	for i := range keyFields {
		fd := &keyFields[i]
		omit := keyFieldOmitEmpty[i]
		at := len(dst)
		if !empty {
			dst = append(dst, ',')
		}
		dst = append(dst, keyFieldHeads[i]...)
		switch fd.kind {
		case 's':
			s := *fd.str(k)
			if omit && s == "" {
				dst = dst[:at]
				continue
			}
			dst = appendJSONString(dst, s)
		case 'u':
			if omit && k.Version == 0 {
				dst = dst[:at]
				continue
			}
			dst = strconv.AppendUint(dst, k.Version, 10)
		case 'i':
			v := *fd.num(k)
			if omit && v == 0 {
				dst = dst[:at]
				continue
			}
			dst = strconv.AppendInt(dst, v, 10)
		case 'b':
			b := *fd.byt(k)
			switch {
			case omit && len(b) == 0:
				dst = dst[:at]
				continue
			case b == nil:
				dst = append(dst, "null"...)
			default:
				dst = append(dst, '"')
				dst = base64.StdEncoding.AppendEncode(dst, b)
				dst = append(dst, '"')
			}
		case 'j':
			v := fd.any(k)
			if omit && jsonEmpty(reflect.ValueOf(v).Elem()) {
				dst = dst[:at]
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				return dst[:at], err
			}
			dst = append(dst, b...)
		default:
			return dst[:at], fmt.Errorf("fsm: Key's field %s has the kind %q, which appendKey does not know", fd.name, fd.kind)
		}
		empty = false
	}
	return append(dst, '}'), nil
}

// jsonEmpty says whether omitempty leaves v out: encoding/json's rule.
func jsonEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

// appendJSONString appends s as json.Marshal encodes it: quoted as it is
// when it is printable ASCII that needs no escape (names, types, states,
// IDs), else by json.Marshal, whose escapes (of <, > and &, of U+2028
// and U+2029, of invalid UTF-8) are its own.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !unescapedJSON[s[i]] {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// unescapedJSON marks the bytes json.Marshal writes in a string as they
// are: printable ASCII but for the quote, the backslash and the HTML
// characters <, > and &.
var unescapedJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
