// Package tlv is keyquorum's Keyless SSL gateway: a server for Cloudflare's
// keyless protocol, which lets a TLS terminator ask for private-key
// operations (RSA decryption, RSA, RSA-PSS, ECDSA and Ed25519 signatures)
// on keys it does not hold, and a small client used by tests and benchmarks.
// The server finds keys through the Keys interface; it holds no state of
// its own and does not import the cluster: the integrator adapts Keys onto
// it.
//
// # Transport
//
// The protocol runs over TCP with TLS (port 2407 by convention) and, here,
// also over QUIC with the ALPN "keyless", where every bidirectional stream
// carries the same byte framing as one TCP connection. Clients authenticate
// with a certificate; a connection without a verified client certificate
// is refused before any request is read. ServerTLSConfig prefers TLS 1.3
// and allows TLS 1.2 with the ECDHE-ECDSA/RSA-AES256-GCM-SHA384 suites that
// gokeyless and the C keyless server use.
//
// # Messages
//
// A message is an 8-byte header followed by a body of items, all numbers
// big-endian:
//
//	header: major (1) | minor (1) | body length (2) | ID (4)
//	item:   tag (1) | length (2) | data (length)
//
// Request items: 0x01 certificate digest (32 bytes), 0x02 SNI, 0x03 client
// IP (4 or 16 bytes), 0x04 subject key identifier (20 bytes), 0x11 opcode
// (1 byte), 0x12 payload, 0x20 padding. Unknown tags and padding are
// ignored, even when repeated; a repeated known tag is a format error.
//
// Replies carry the request's ID, version 1.0, an opcode item (0xF0 result,
// 0xFF error, 0xF2 pong) and a payload item (the result, the one-byte error
// code, or the echoed ping payload), padded with a 0x20 item to PaddedSize
// bytes when they are shorter. A client may pipeline requests; replies come
// in any order.
//
// # Opcodes
//
//	0x01        RSA decrypt, PKCS #1 v1.5; the reply is the unpadded plaintext
//	            (or, with WithPaddedRSADecrypt, the whole block: see below)
//	0x02..0x07  RSA sign, PKCS #1 v1.5, with MD5SHA1, SHA-1, SHA-224, SHA-256, SHA-384, SHA-512
//	0x08        RSA raw decrypt: m = c^d mod n, as many bytes as the modulus
//	0x12..0x17  ECDSA sign with the same hashes; the signature is DER
//	0x18        Ed25519 sign; the payload is the message itself
//	0x35..0x37  RSA-PSS sign with SHA-256, SHA-384, SHA-512, salt length = hash length
//	0xF1        ping, answered by 0xF2 pong with the same payload
//
// Sign payloads are the digest, already hashed; its length must be the
// hash's (36 bytes for MD5SHA1).
//
// # Errors
//
// The error payload is one byte; see Code. How the server chooses:
//
//	0x01 crypto failed      the operation failed, or the key cannot do this
//	                        operation (an ECDSA opcode on an RSA key, raw
//	                        decrypt on a key that offers no RawDecrypter, ...),
//	                        or an RSA ciphertext is not as long as the modulus
//	                        (the C server's answer, which its test client checks)
//	0x02 key not found      Keys knows neither the SKI nor the digest, or it
//	                        refuses this client the key (ErrDenied): a client
//	                        that may not use a key cannot learn it exists
//	0x03 read error         the client ended its side of the stream in the
//	                        middle of a message body (answered, then closed)
//	0x04 version mismatch   the major version is not 1
//	0x05 bad opcode         an opcode this server does not know
//	0x06 unexpected opcode  a reply opcode (0xF0, 0xF2, 0xFF) in a request
//	0x07 format error       an item longer than the message, a repeated tag,
//	                        no opcode, no payload where one is needed, a
//	                        field or sign digest of the wrong length, or a body
//	                        longer than the server's maximum
//	0x08 internal error     Keys failed for another reason, or a quorum could not
//	                        answer for an rsa-threshold key (no quorum, ...)
//
// A bad request never closes the connection, except a header announcing a
// body longer than the configured maximum (see WithMaxBody): the server
// answers it with 0x07 and closes, since it will not read that body.
//
// # Performance
//
// Each connection (or QUIC stream) has one reader goroutine and one writer
// goroutine; requests are executed by a worker pool shared by the whole
// server, whose size is bounded. Replies are coalesced: the writer flushes
// its buffer only when no other reply is waiting, so a pipelining client
// gets many replies per TLS record. The number of requests in flight per
// connection is bounded, so a client that does not read its replies stops
// being read rather than holding workers.
//
// # RSA decryption
//
// Cloudflare's two servers disagree on opcode 0x01. The C server (and its
// test client, and the protocol description in kssl.h) answers the
// plaintext with the PKCS #1 v1.5 padding removed; gokeyless' server
// answers c^d mod n, the padded block, and gokeyless' current Go client
// removes the padding itself whenever crypto/tls passes it
// PKCS1v15DecryptOptions, which it always does. (Its older client, like
// the C one, took the answer as the plaintext.) No answer satisfies both:
// a plaintext does not parse as a block, and a block is not the plaintext.
// Nothing in a request tells the clients apart either, so the server
// answers the C server's way by default and WithPaddedRSADecrypt (keyd
// --tlv-rsa-decrypt=padded) switches a deployment whose TLS terminators
// run gokeyless' client to the padded block. Raw decryption (0x08) is the
// block for both.
//
// # Keys by quorum
//
// A key the integrator serves by quorum (ClusterKeys: an rsa-threshold
// key) is a crypto.Signer that pads here and asks t holders for
// x^(2Δs_i); the combined result is checked with the public exponent
// before it is answered. No private value is in the serving node's
// memory. ECDSA P-256 keys have no practical threshold scheme without a
// heavy MPC protocol: they are always assembled (released whole to the
// serving node for their assemble_ttl; an operator's keyctl key sign with
// one is made whole the same way, on the node that coordinates it), and so
// are Ed25519 keys and RSA keys an operator imports with --assembled-rsa
// for throughput.
//
// # Trust
//
// The keyless protocol can only be authorized by the node that terminates
// it: the request is not signed by the TLS terminator, so the serving node
// decides, from the client certificate, whether the key may be used.
// RSA decryption (0x01) answers "crypto failed" to a bad padding: like any
// keyless server it is a padding oracle for whoever may use the key, which
// is why the TLS terminator must be trusted with the key's use.
package tlv
