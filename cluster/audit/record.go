package audit

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// appendDecisionRecord appends r, a decision record, as json.Marshal
// writes it, byte for byte (FuzzDecisionRecordMatchesMarshal): each node writes
// one or two on every release, and reflection was most of their cost.
func appendDecisionRecord(b []byte, r *Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = appendJSONField(b, `,"time":`, r.Time)
	b = appendJSONField(b, `,"type":`, r.Type)
	b = appendJSONField(b, `,"prev":`, r.Prev)
	if r.Node != "" {
		b = appendJSONField(b, `,"node":`, r.Node)
	}
	if len(r.PublicKey) > 0 {
		b = append(b, `,"public_key":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.PublicKey)
		b = append(b, '"')
	}
	if r.Dropped != 0 {
		b = append(b, `,"dropped":`...)
		b = strconv.AppendInt(b, int64(r.Dropped), 10)
	}
	if d := r.Decision; d != nil {
		b = appendJSONField(b, `,"role":`, d.Role)
		b = appendJSONField(b, `,"principal":`, d.Principal)
		b = appendJSONOptional(b, `,"key":`, d.Key)
		b = appendJSONField(b, `,"op":`, d.Op)
		b = appendJSONOptional(b, `,"gateway":`, d.Gateway)
		b = appendJSONOptional(b, `,"client":`, d.Client)
		b = appendJSONOptional(b, `,"basis":`, d.Basis)
		b = appendJSONField(b, `,"outcome":`, d.Outcome)
		b = appendJSONOptional(b, `,"reason":`, d.Reason)
		b = appendJSONOptional(b, `,"nonce":`, d.Nonce)
	}
	return append(b, '}')
}

func appendJSONOptional(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONField(b, name, s)
}

func appendJSONField(b []byte, name, s string) []byte {
	return appendJSONString(append(b, name...), s)
}

// appendJSONString appends s quoted as encoding/json quotes a string:
// HTML's <, > and & escaped, each byte of invalid UTF-8 replaced by
// U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
