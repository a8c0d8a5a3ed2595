package tlv

import (
	"encoding/binary"
	"fmt"
)

// The version this package speaks. Replies always carry 1.0; requests of
// any minor version of major 1 are accepted.
const (
	VersionMajor = 1
	VersionMinor = 0
)

// HeaderSize is the size of a message header.
const HeaderSize = 8

// itemHeaderSize is the size of an item's tag and length.
const itemHeaderSize = 3

// MaxBody is the largest body the 16-bit length field can announce.
const MaxBody = 0xFFFF

// PaddedSize is the size replies are padded to with a TagPadding item.
// A reply that is already longer, or that is within two bytes of it (an
// item needs three), is not padded.
const PaddedSize = 1024

// Tag identifies an item.
type Tag byte

// The item tags.
const (
	TagDigest   Tag = 0x01 // SHA-256 of the key's uppercase hex modulus or point (see Digest), 32 bytes
	TagSNI      Tag = 0x02 // the server name the TLS client asked for
	TagClientIP Tag = 0x03 // the TLS client's address, 4 or 16 bytes
	TagSKI      Tag = 0x04 // the key's subject key identifier (see SKI), 20 bytes
	TagOpcode   Tag = 0x11 // the operation, 1 byte
	TagPayload  Tag = 0x12 // the operation's input or result
	TagPadding  Tag = 0x20 // ignored
)

// Item lengths the protocol fixes.
const (
	DigestSize = 32
	SKISize    = 20
)

// Op is an opcode: the operation a request asks for, or the kind of a reply.
type Op byte

// The opcodes.
const (
	OpRSADecrypt       Op = 0x01
	OpRSASignMD5SHA1   Op = 0x02
	OpRSASignSHA1      Op = 0x03
	OpRSASignSHA224    Op = 0x04
	OpRSASignSHA256    Op = 0x05
	OpRSASignSHA384    Op = 0x06
	OpRSASignSHA512    Op = 0x07
	OpRSADecryptRaw    Op = 0x08
	OpECDSASignMD5SHA1 Op = 0x12
	OpECDSASignSHA1    Op = 0x13
	OpECDSASignSHA224  Op = 0x14
	OpECDSASignSHA256  Op = 0x15
	OpECDSASignSHA384  Op = 0x16
	OpECDSASignSHA512  Op = 0x17
	OpEd25519Sign      Op = 0x18
	OpRSAPSSSignSHA256 Op = 0x35
	OpRSAPSSSignSHA384 Op = 0x36
	OpRSAPSSSignSHA512 Op = 0x37
	OpResponse         Op = 0xF0 // reply: success, the payload is the result
	OpPing             Op = 0xF1
	OpPong             Op = 0xF2 // reply to OpPing, echoing its payload
	OpError            Op = 0xFF // reply: failure, the payload is one Code byte
)

// String names the opcode.
func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("opcode 0x%02x", byte(o))
}

var opNames = [256]string{
	OpRSADecrypt:       "rsa-decrypt",
	OpRSASignMD5SHA1:   "rsa-sign-md5sha1",
	OpRSASignSHA1:      "rsa-sign-sha1",
	OpRSASignSHA224:    "rsa-sign-sha224",
	OpRSASignSHA256:    "rsa-sign-sha256",
	OpRSASignSHA384:    "rsa-sign-sha384",
	OpRSASignSHA512:    "rsa-sign-sha512",
	OpRSADecryptRaw:    "rsa-decrypt-raw",
	OpECDSASignMD5SHA1: "ecdsa-sign-md5sha1",
	OpECDSASignSHA1:    "ecdsa-sign-sha1",
	OpECDSASignSHA224:  "ecdsa-sign-sha224",
	OpECDSASignSHA256:  "ecdsa-sign-sha256",
	OpECDSASignSHA384:  "ecdsa-sign-sha384",
	OpECDSASignSHA512:  "ecdsa-sign-sha512",
	OpEd25519Sign:      "ed25519-sign",
	OpRSAPSSSignSHA256: "rsa-pss-sign-sha256",
	OpRSAPSSSignSHA384: "rsa-pss-sign-sha384",
	OpRSAPSSSignSHA512: "rsa-pss-sign-sha512",
	OpResponse:         "response",
	OpPing:             "ping",
	OpPong:             "pong",
	OpError:            "error",
}

// Code is the one-byte payload of an error reply.
type Code byte

// The error codes.
const (
	CodeCryptoFailed     Code = 0x01
	CodeKeyNotFound      Code = 0x02
	CodeReadError        Code = 0x03
	CodeVersionMismatch  Code = 0x04
	CodeBadOpcode        Code = 0x05
	CodeUnexpectedOpcode Code = 0x06
	CodeFormatError      Code = 0x07
	CodeInternalError    Code = 0x08
)

var codeNames = [...]string{
	CodeCryptoFailed:     "crypto failed",
	CodeKeyNotFound:      "key not found",
	CodeReadError:        "read error",
	CodeVersionMismatch:  "version mismatch",
	CodeBadOpcode:        "bad opcode",
	CodeUnexpectedOpcode: "unexpected opcode",
	CodeFormatError:      "format error",
	CodeInternalError:    "internal error",
}

// String names the code.
func (c Code) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("error 0x%02x", byte(c))
}

// Error is a protocol error: one the parser found in a message, or one a
// server answered with. Reason says what was wrong; it is never sent on the
// wire (the reply carries only the code) and never holds key material.
type Error struct {
	Code   Code
	Reason string
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return "keyless: " + e.Code.String()
	}
	return "keyless: " + e.Code.String() + ": " + e.Reason
}

func formatError(format string, args ...any) *Error {
	return &Error{Code: CodeFormatError, Reason: fmt.Sprintf(format, args...)}
}

// Header is a message header.
type Header struct {
	Major, Minor uint8
	Length       uint16 // of the body
	ID           uint32
}

// ParseHeader reads the header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, formatError("header of %d bytes, want %d", len(b), HeaderSize)
	}
	return Header{
		Major:  b[0],
		Minor:  b[1],
		Length: binary.BigEndian.Uint16(b[2:4]),
		ID:     binary.BigEndian.Uint32(b[4:8]),
	}, nil
}

func appendHeader(b []byte, h Header) []byte {
	b = append(b, h.Major, h.Minor)
	b = binary.BigEndian.AppendUint16(b, h.Length)
	return binary.BigEndian.AppendUint32(b, h.ID)
}

// Request is a parsed request. Its byte slices point into the message it
// was parsed from. A field that was absent is nil (SNI: empty).
type Request struct {
	ID       uint32
	Op       Op
	Digest   []byte // TagDigest
	SNI      string // TagSNI
	ClientIP []byte // TagClientIP
	SKI      []byte // TagSKI
	Payload  []byte // TagPayload; non-nil and empty if the item was present and empty
}

// ParseRequest parses one whole request message: header and body, with
// nothing after it. It returns an *Error: CodeVersionMismatch if the major
// version is not 1, CodeFormatError if an item is malformed, a known tag is
// repeated, a fixed-size item has the wrong length, or there is no opcode.
// Unknown tags and padding are skipped. It does not judge the opcode or
// whether the payload suits it; the server does.
func ParseRequest(msg []byte) (*Request, error) {
	h, err := ParseHeader(msg)
	if err != nil {
		return nil, err
	}
	if int(h.Length) != len(msg)-HeaderSize {
		return nil, formatError("header announces a body of %d bytes, message has %d", h.Length, len(msg)-HeaderSize)
	}
	if h.Major != VersionMajor {
		return nil, &Error{Code: CodeVersionMismatch, Reason: fmt.Sprintf("major version %d, want %d", h.Major, VersionMajor)}
	}
	r := new(Request)
	if err := r.parseBody(msg[HeaderSize:]); err != nil {
		return nil, err
	}
	r.ID = h.ID
	return r, nil
}

// parseBody fills r from the items of body; it resets every field but ID.
func (r *Request) parseBody(body []byte) error {
	*r = Request{ID: r.ID}
	var seen uint8 // one bit per known tag
	for off := 0; off < len(body); {
		if len(body)-off < itemHeaderSize {
			return formatError("%d bytes at offset %d are too few for an item header", len(body)-off, off)
		}
		tag := Tag(body[off])
		n := int(binary.BigEndian.Uint16(body[off+1 : off+3]))
		off += itemHeaderSize
		if n > len(body)-off {
			return formatError("item 0x%02x of %d bytes is longer than the %d bytes left in the message", byte(tag), n, len(body)-off)
		}
		data := body[off : off+n : off+n]
		off += n
		bit := knownTagBit(tag)
		if bit == 0 {
			continue // unknown tags and padding are ignored
		}
		if seen&bit != 0 {
			return formatError("item 0x%02x appears twice", byte(tag))
		}
		seen |= bit
		switch tag {
		case TagDigest:
			if n != DigestSize {
				return formatError("digest of %d bytes, want %d", n, DigestSize)
			}
			r.Digest = data
		case TagSNI:
			r.SNI = string(data)
		case TagClientIP:
			if n != 4 && n != 16 {
				return formatError("client IP of %d bytes, want 4 or 16", n)
			}
			r.ClientIP = data
		case TagSKI:
			if n != SKISize {
				return formatError("SKI of %d bytes, want %d", n, SKISize)
			}
			r.SKI = data
		case TagOpcode:
			if n != 1 {
				return formatError("opcode item of %d bytes, want 1", n)
			}
			r.Op = Op(data[0])
		case TagPayload:
			r.Payload = data
		}
	}
	if seen&knownTagBit(TagOpcode) == 0 {
		return formatError("no opcode item")
	}
	return nil
}

func knownTagBit(t Tag) uint8 {
	switch t {
	case TagDigest:
		return 1 << 0
	case TagSNI:
		return 1 << 1
	case TagClientIP:
		return 1 << 2
	case TagSKI:
		return 1 << 3
	case TagOpcode:
		return 1 << 4
	case TagPayload:
		return 1 << 5
	}
	return 0
}

// Marshal encodes the request as a message of version 1.0.
func (r *Request) Marshal() ([]byte, error) { return r.Append(nil) }

// Append appends the request's message to b. Absent fields (nil, or an
// empty SNI) are left out; a non-nil empty Payload is sent as an empty
// item. It fails if the body would not fit the 16-bit length.
func (r *Request) Append(b []byte) ([]byte, error) {
	size := itemHeaderSize + 1
	for _, f := range [][]byte{r.Digest, r.ClientIP, r.SKI, r.Payload} {
		if f != nil {
			size += itemHeaderSize + len(f)
		}
	}
	if r.SNI != "" {
		size += itemHeaderSize + len(r.SNI)
	}
	if size > MaxBody {
		return b, formatError("request body of %d bytes is longer than %d", size, MaxBody)
	}
	b = appendHeader(b, Header{Major: VersionMajor, Minor: VersionMinor, Length: uint16(size), ID: r.ID})
	if r.Digest != nil {
		b = appendItem(b, TagDigest, r.Digest)
	}
	if r.SNI != "" {
		b = append(b, byte(TagSNI))
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.SNI)))
		b = append(b, r.SNI...)
	}
	if r.ClientIP != nil {
		b = appendItem(b, TagClientIP, r.ClientIP)
	}
	if r.SKI != nil {
		b = appendItem(b, TagSKI, r.SKI)
	}
	b = append(b, byte(TagOpcode), 0, 1, byte(r.Op))
	if r.Payload != nil {
		b = appendItem(b, TagPayload, r.Payload)
	}
	return b, nil
}

func appendItem(b []byte, t Tag, data []byte) []byte {
	b = append(b, byte(t))
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// Response is a parsed reply.
type Response struct {
	ID      uint32
	Op      Op     // OpResponse, OpPong or OpError
	Payload []byte // the result, the pong's payload, or the error code
}

// Err is the server's error as an *Error if the reply is OpError, else nil.
func (r *Response) Err() error {
	if r.Op != OpError {
		return nil
	}
	if len(r.Payload) != 1 {
		return &Error{Code: CodeFormatError, Reason: fmt.Sprintf("error reply with a payload of %d bytes", len(r.Payload))}
	}
	return &Error{Code: Code(r.Payload[0])}
}

// ParseResponse parses one whole reply message. Its Payload points into
// msg. Padding and unknown tags are skipped; the opcode item is required.
func ParseResponse(msg []byte) (*Response, error) {
	h, err := ParseHeader(msg)
	if err != nil {
		return nil, err
	}
	if int(h.Length) != len(msg)-HeaderSize {
		return nil, formatError("header announces a body of %d bytes, message has %d", h.Length, len(msg)-HeaderSize)
	}
	if h.Major != VersionMajor {
		return nil, &Error{Code: CodeVersionMismatch, Reason: fmt.Sprintf("major version %d, want %d", h.Major, VersionMajor)}
	}
	var req Request
	if err := req.parseBody(msg[HeaderSize:]); err != nil {
		return nil, err
	}
	return &Response{ID: h.ID, Op: req.Op, Payload: req.Payload}, nil
}

// appendReply appends a reply of version 1.0 with the given opcode and
// payload, padded to PaddedSize when it is shorter.
func appendReply(b []byte, id uint32, op Op, payload []byte) []byte {
	body := itemHeaderSize + 1 + itemHeaderSize + len(payload)
	pad := -1
	if total := HeaderSize + body; total+itemHeaderSize <= PaddedSize {
		pad = PaddedSize - total - itemHeaderSize
		body += itemHeaderSize + pad
	}
	b = appendHeader(b, Header{Major: VersionMajor, Minor: VersionMinor, Length: uint16(body), ID: id})
	b = append(b, byte(TagOpcode), 0, 1, byte(op))
	b = appendItem(b, TagPayload, payload)
	if pad >= 0 {
		b = append(b, byte(TagPadding))
		b = binary.BigEndian.AppendUint16(b, uint16(pad))
		b = append(b, zeros[:pad]...)
	}
	return b
}

var zeros [PaddedSize]byte
