// Package agent is keyquorum's boot agent: it fetches a machine's unlock
// key from a cluster, for keyagent and the boot scripts around it
// (crypttab keyscript, initramfs-tools, dracut, systemd, clevis).
//
// # Identity
//
// A machine is an Ed25519 key (EnsureMachineKey, PKCS#8 PEM, mode 0600).
// The cluster knows it by MachineID = vocab.PrincipalID(public key) once an
// operator registers it with keyctl machine add. The agent needs no TLS
// client certificate: every request is signed by the machine key.
//
// # Wire protocol
//
// One call, POST /v1/machine/unlock over HTTPS, on HTTP/3 (QUIC, UDP) or
// HTTP/1.1 (TCP) on the same port number. The body is an fsm.Signed whose
// payload is an fsm.Command of type "release" with a fresh 16-byte nonce,
// the time, and a ReleaseRequest {key, op "get", ephemeral}: a fresh
// X25519 public key made for this request only. Share holders check
// the machine's signature, the nonce (never seen before) and the time
// themselves, so the coordinating node can neither forge nor replay it.
//
// A 200 answer is an UnlockReply: the key's KEM ciphertext (R, sealed)
// under the cluster key, the epoch's public polynomial, and a partial
// decryption s_i*R with its DLEQ proof from each share holder that
// answered, sealed by that holder to the ephemeral key
// (shamir.SealX25519, info fsm.PartialSealInfo). The agent opens each
// partial (shamir.OpenX25519), checks its proof once against the holder's
// public share with the context fsm.ReleaseContext(cluster, key, version,
// epoch, signed payload) (shamir.Verifier), and combines t of the partials
// it verified (Verifier.Open): client-side combine. The coordinating
// node relays sealed partials it cannot read, so no server sees the key.
// A partial that fails is reported and skipped. The polynomial's constant
// term must equal the cluster public key the config pins, or the answer
// is refused as bad_reply: without the pin, a lying coordinator could
// answer with a polynomial, partials and a key of its own making. So the
// pin is required (Config.Validate refuses a config without one, before
// any network call).
//
// # The pin
//
// keyagent enroll records the cluster ID and public key in the config
// (SavePin): as keyctl cluster pin prints them, or as t members, each
// asked at its own address and authenticated by its node certificate,
// agree on them (ConfirmPin, with an operator's certificate, since the
// status is an operator's call).
//
// Errors are {"error":{"kind","message"}}. Kind pending_approval means
// the request is recorded as a pending session that an operator approves
// with keyctl session approve; the agent asks again with backoff (1 s
// doubling to 30 s) until the config's Wait.
//
// # Failover
//
// Servers come from the config, flags and DNS SRV records
// (_keyquorum._tcp.DOMAIN). Each round tries them in random order, one
// attempt each, bounded by TimeoutPerNode: QUIC first, TCP beside it after
// a short head start or as soon as QUIC fails, the first finished
// handshake carrying the single request. A refused, blackholed or lying
// node costs at most TimeoutPerNode before the next is tried. A round
// stops at the first release or pending answer; otherwise the error of
// highest rank is returned (refusals checked by share holders before a
// reply that failed verification, before no quorum, before no answer).
//
// Every error is an *Error with a Kind, which ExitCode maps to keyagent's
// exit status. Messages never contain key material.
package agent
