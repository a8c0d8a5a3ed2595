package fsm

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
)

// Scanning a checkpoint's state without encoding/json's stream decoder.
//
// A restore used to find each key's bytes in the checkpoint with
// encoding/json's Decoder (Token, then Decode into a RawMessage), on one
// goroutine: at 100,000 keys that scan was about a third of a restore's
// CPU and, since the workers waited for it, most of its wall time.
// jsonScan finds the same bytes by tracking strings and brackets only;
// it checks the state object's own grammar (names, colons, commas)
// itself, and every value it hands on is checked by a real decoder:
// each key by decodeKey (below) or encoding/json, the other fields by
// encoding/json. A value the scanner cuts wrongly (it can, in text that
// is not JSON) is text that decoder refuses, so what the scan accepts is
// what encoding/json accepts (FuzzReadSnap).
//
// decodeKey decodes a key's encoding as json.Marshal writes it (its
// fields in order, no spaces, strings of printable ASCII without escapes)
// and declines anything else, which encoding/json then decodes: its
// result is always encoding/json's (FuzzDecodeKey), about four times
// faster.

// scanBlock is how much of a state's encoding jsonScan reads at a time.
const scanBlock = 256 << 10

// jsonScan reads JSON text from r, a block at a time, into one buffer
// it reuses: a value it returns is valid until its next call, and a
// caller that keeps one copies it.
type jsonScan struct {
	r   io.Reader
	buf []byte
	pos int
	eof bool
	err error // a read error other than io.EOF
}

// more reads more of the text, keeping buf[pos:] (moved to the start of
// the buffer). It reports whether it read anything.
func (s *jsonScan) more() bool {
	if s.eof || s.err != nil {
		return false
	}
	rest := len(s.buf) - s.pos
	if cap(s.buf)-rest < scanBlock/2 {
		nb := make([]byte, rest, max(scanBlock, 2*rest))
		copy(nb, s.buf[s.pos:])
		s.buf = nb
	} else {
		s.buf = s.buf[:copy(s.buf[:cap(s.buf)], s.buf[s.pos:])]
	}
	s.pos = 0
	for len(s.buf) == rest {
		n, err := s.r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if err == io.EOF {
			s.eof = true
			break
		}
		if err != nil {
			s.err = err
			break
		}
	}
	return len(s.buf) > rest
}

// errEnd is the error of text that ends too soon, or of a read error.
func (s *jsonScan) errEnd() error {
	if s.err != nil {
		return s.err
	}
	return io.ErrUnexpectedEOF
}

// skipSpace skips JSON whitespace and gives the next byte, unread; false
// at the end of the text.
func (s *jsonScan) skipSpace() (byte, bool) {
	for {
		for s.pos < len(s.buf) {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return c, true
			}
		}
		if !s.more() {
			return 0, false
		}
	}
}

// expect skips whitespace and reads the byte c.
func (s *jsonScan) expect(c byte) error {
	b, ok := s.skipSpace()
	if !ok {
		return s.errEnd()
	}
	if b != c {
		return errors.New("invalid JSON in a state")
	}
	s.pos++
	return nil
}

// value skips whitespace and returns the next value's bytes: a string up
// to its closing quote, an object or array up to its closing bracket
// (counting brackets outside strings), anything else up to the next
// delimiter. It does not check them.
func (s *jsonScan) value() ([]byte, error) {
	if _, ok := s.skipSpace(); !ok {
		return nil, s.errEnd()
	}
	i, depth, inString := 0, 0, false
	for {
		for s.pos+i < len(s.buf) {
			c := s.buf[s.pos+i]
			if inString {
				switch c {
				case '\\':
					i += 2 // the escaped byte (beyond the buffer: read below)
				case '"':
					inString = false
					i++
					if depth == 0 {
						return s.take(i), nil
					}
				default: // on to the next quote or backslash
					rest := s.buf[s.pos+i:]
					j := bytes.IndexByte(rest, '"')
					if j < 0 {
						j = len(rest)
					}
					if k := bytes.IndexByte(rest[:j], '\\'); k >= 0 {
						j = k
					}
					i += j
				}
				continue
			}
			switch {
			case c == '"':
				inString = true
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				if depth == 0 { // a scalar, or nothing, before it
					return s.scalar(i)
				}
				depth--
				if depth == 0 {
					return s.take(i + 1), nil
				}
			case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
				return s.scalar(i)
			}
			i++
		}
		if !s.more() {
			if depth == 0 && !inString && s.pos+i >= len(s.buf) {
				return s.scalar(len(s.buf) - s.pos)
			}
			return nil, s.errEnd()
		}
	}
}

// scalar takes the n bytes of a number or literal.
func (s *jsonScan) scalar(n int) ([]byte, error) {
	if n == 0 {
		return nil, errors.New("invalid JSON in a state: a value is missing")
	}
	return s.take(n), nil
}

func (s *jsonScan) take(n int) []byte {
	v := s.buf[s.pos : s.pos+n : s.pos+n]
	s.pos += n
	return v
}

// name reads an object's member name and its colon: the name as
// encoding/json decodes it.
func (s *jsonScan) name() (string, error) {
	if c, ok := s.skipSpace(); !ok {
		return "", s.errEnd()
	} else if c != '"' {
		return "", errors.New("invalid JSON in a state: a name is not a string")
	}
	v, err := s.value()
	if err != nil {
		return "", err
	}
	name, ok := plainString(v)
	if !ok {
		if err := json.Unmarshal(v, &name); err != nil {
			return "", err
		}
	}
	return name, s.expect(':')
}

// end checks that nothing but whitespace is left.
func (s *jsonScan) end() error {
	if _, ok := s.skipSpace(); ok {
		return errors.New("data after the state")
	}
	return s.err
}

// plainString is the content of the JSON string v when it is printable
// ASCII without escapes, which is what encoding/json decodes it to.
func plainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	for _, c := range v[1 : len(v)-1] {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(v[1 : len(v)-1]), true
}

// base64Chars marks the characters of standard base64, padding included.
var base64Chars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = true
	}
	return t
}()

// isBase64 says whether b has only characters of standard base64: no
// escape, no control character.
func isBase64(b []byte) bool {
	for _, c := range b {
		if !base64Chars[c] {
			return false
		}
	}
	return true
}

// quotedBase64 decodes a JSON string's standard base64 content up to its
// closing quote, which it consumes, as base64.StdEncoding.Decode decodes
// the whole string (what encoding/json does with it), and refuses any
// other character (an escape, a control character).
type quotedBase64 struct {
	r      *bufio.Reader
	closed bool    // the closing quote was read
	bad    bool    // a character that is not base64
	part   [4]byte // the start of a quad
	npart  int
	padded bool // a quad with padding was decoded: nothing may follow
}

func (q *quotedBase64) Read(p []byte) (int, error) {
	if q.closed {
		return 0, io.EOF
	}
	if len(p) < 3 {
		return 0, io.ErrShortBuffer
	}
	buf, _ := q.r.Peek(q.r.Buffered()) // buffered: no error
	if len(buf) == 0 {
		if _, err := q.r.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		buf, _ = q.r.Peek(q.r.Buffered())
	}
	// At most what fills p.
	buf = buf[:min(len(buf), len(p)/3*4-q.npart)]
	n := 0
	for n < len(buf) && buf[n] != '"' {
		if !base64Chars[buf[n]] {
			q.bad = true
			return 0, errors.New("not base64")
		}
		n++
	}
	quote := n < len(buf)
	chars := buf[:n]
	if n > 0 && q.padded {
		return 0, errors.New("base64 after its padding")
	}
	out := 0
	if q.npart > 0 {
		k := copy(q.part[q.npart:], chars)
		q.npart += k
		chars = chars[k:]
		if q.npart == 4 {
			m, err := base64.StdEncoding.Decode(p, q.part[:])
			if err != nil {
				return 0, err
			}
			out, q.npart, q.padded = m, 0, q.part[3] == '='
			if len(chars) > 0 && q.padded {
				return 0, errors.New("base64 after its padding")
			}
		}
	}
	whole := len(chars) / 4 * 4
	if whole > 0 {
		m, err := base64.StdEncoding.Decode(p[out:], chars[:whole])
		if err != nil {
			return 0, err
		}
		out += m
		q.padded = chars[whole-1] == '='
	}
	q.npart += copy(q.part[q.npart:], chars[whole:])
	if q.npart > 0 && q.padded {
		return 0, errors.New("base64 after its padding")
	}
	q.r.Discard(n)
	if quote {
		q.r.Discard(1)
		q.closed = true
		if q.npart > 0 {
			return 0, errors.New("base64 cut short")
		}
		if out == 0 {
			return 0, io.EOF
		}
	}
	return out, nil
}

// keyField is one of Key's fields as json.Marshal writes it.
type keyField struct {
	name string
	kind byte // 's' string, 'u' uint64, 'i' int64, 'b' []byte, 'j' anything else (encoding/json)
	str  func(k *Key) *string
	num  func(k *Key) *int64
	byt  func(k *Key) *[]byte
	any  func(k *Key) any
}

// keyFields are Key's fields in the order json.Marshal writes them
// (TestDecodeKeyKnowsEveryField): decodeKeyFast reads keys by them, and
// appendKey writes them.
var keyFields = [...]keyField{
	{name: "id", kind: 's', str: func(k *Key) *string { return &k.ID }},
	{name: "name", kind: 's', str: func(k *Key) *string { return &k.Name }},
	{name: "type", kind: 's', str: func(k *Key) *string { return &k.Type }},
	{name: "version", kind: 'u'},
	{name: "state", kind: 's', str: func(k *Key) *string { return &k.State }},
	{name: "created_at", kind: 'i', num: func(k *Key) *int64 { return &k.CreatedAt }},
	{name: "updated_at", kind: 'i', num: func(k *Key) *int64 { return &k.UpdatedAt }},
	{name: "expires_at", kind: 'i', num: func(k *Key) *int64 { return &k.ExpiresAt }},
	{name: "r", kind: 'b', byt: func(k *Key) *[]byte { return &k.R }},
	{name: "sealed", kind: 'b', byt: func(k *Key) *[]byte { return &k.Sealed }},
	{name: "public", kind: 'b', byt: func(k *Key) *[]byte { return &decodedDetail(k).Public }},
	{name: "assemble_ttl", kind: 'i', num: func(k *Key) *int64 { return (*int64)(&decodedDetail(k).AssembleTTL) }},
	{name: "access", kind: 'j', any: func(k *Key) any { return &decodedDetail(k).Access }},
	{name: "tang", kind: 'j', any: func(k *Key) any { return &decodedDetail(k).Tang }},
	{name: "rsa_threshold", kind: 'j', any: func(k *Key) any { return &decodedDetail(k).RSA }},
	{name: "frost", kind: 'j', any: func(k *Key) any { return &decodedDetail(k).Frost }},
	{name: "transit", kind: 'j', any: func(k *Key) any { return &decodedDetail(k).Transit }},
}

// decodedDetail is the KeyDetail of k, a key being decoded, made when
// the first of its fields is read: as encoding/json does, so a key
// without those fields has none (and k is a new key, so nothing shares
// it). Only for decoding: it changes k.
func decodedDetail(k *Key) *KeyDetail {
	if k.KeyDetail == nil {
		k.KeyDetail = new(KeyDetail)
	}
	return k.KeyDetail
}

// decodeKey decodes the encoding of a key into k, which it has made
// anew: by the fast path when b is as json.Marshal writes a key, else by
// encoding/json. Either way k is what json.Unmarshal gives. name is the
// key's name in the state, whose string k.Name shares when they are the
// same.
func decodeKey(b []byte, k *Key, name string) error {
	if decodeKeyFast(b, k, name) {
		return nil
	}
	*k = Key{}
	return json.Unmarshal(b, k)
}

// decodeKeyFast decodes b into k when b has Key's fields in
// json.Marshal's order, each at most once, no whitespace, its strings
// printable ASCII without escapes, its numbers integers and its byte
// slices base64 strings; the fields whose values are objects go through
// encoding/json. It gives what json.Unmarshal gives, or false (k is
// then partly set).
func decodeKeyFast(b []byte, k *Key, name string) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	i, next := 1, 0
	if b[i] == '}' {
		return i+1 == len(b)
	}
	for {
		// "name":
		n := plainAt(b, i)
		if n < 0 || n >= len(b) || b[n] != ':' {
			return false
		}
		field := b[i+1 : n-1]
		f := next
		for f < len(keyFields) && keyFields[f].name != string(field) {
			f++
		}
		if f == len(keyFields) {
			return false
		}
		next = f + 1
		i = n + 1
		if i >= len(b) {
			return false
		}
		fd := &keyFields[f]
		switch fd.kind {
		case 's':
			n := plainAt(b, i)
			if n < 0 {
				return false
			}
			*fd.str(k), i = internString(b[i+1:n-1], name), n
		case 'u', 'i':
			neg := fd.kind == 'i' && b[i] == '-'
			n := i
			if neg {
				n++
			}
			d := n
			var v uint64
			for n < len(b) && '0' <= b[n] && b[n] <= '9' {
				if v > (1<<64-1)/10 {
					return false
				}
				v = v*10 + uint64(b[n]-'0')
				if v < uint64(b[n]-'0') {
					return false
				}
				n++
			}
			if n == d || (n-d > 1 && b[d] == '0') { // no digits, or a leading zero
				return false
			}
			switch {
			case fd.kind == 'u':
				k.Version = v
			case neg && v <= 1<<63:
				*fd.num(k) = int64(-v)
			case !neg && v < 1<<63:
				*fd.num(k) = int64(v)
			default:
				return false
			}
			i = n
		case 'b':
			if b[i] != '"' {
				return false
			}
			n := i + 1
			for n < len(b) && base64Chars[b[n]] {
				n++
			}
			if n >= len(b) || b[n] != '"' {
				return false
			}
			// AppendDecode allocates the decoded length, where
			// DecodedLen counts the padding too: a 32-byte point took
			// 33, which the heap rounds up to 48, for the key's life.
			dec, err := base64.StdEncoding.AppendDecode(nil, b[i+1:n])
			if err != nil {
				return false
			}
			if dec == nil {
				dec = []byte{} // as json.Unmarshal gives for ""
			}
			*fd.byt(k), i = dec[:len(dec):len(dec)], n+1
		case 'j':
			if b[i] != '{' {
				return false
			}
			s := jsonScan{buf: b, pos: i, eof: true}
			v, err := s.value()
			if err != nil || json.Unmarshal(v, fd.any(k)) != nil {
				return false
			}
			i = s.pos
		}
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return i+1 == len(b)
		case ',':
			i++
		default:
			return false
		}
	}
}

// plainAt finds the JSON string at b[i:] when it is printable ASCII
// without escapes: the index after it, or -1.
func plainAt(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for n := i + 1; n < len(b); n++ {
		switch c := b[n]; {
		case c == '"':
			return n + 1
		case c < 0x20 || c >= 0x7f || c == '\\':
			return -1
		}
	}
	return -1
}

// internString is s as a string: the key's name, or one of the key
// types and states, which every key shares, when it is one of them, else
// a copy.
func internString(s []byte, name string) string {
	if string(s) == name {
		return name
	}
	for _, c := range [...]string{KeyActive, KeyRevoked, KeyDestroyed} {
		if string(s) == c {
			return c
		}
	}
	for _, c := range keyTypes {
		if string(s) == c {
			return c
		}
	}
	return string(s)
}
