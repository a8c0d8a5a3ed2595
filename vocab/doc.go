// Package vocab is the vocabulary every part of keyquorum speaks: the
// error kinds and the one table that gives each kind its HTTP status,
// gRPC code and process exit code; the wire types a machine's unlock
// shares between the agent and the nodes; the domain-separation labels
// that bind signatures, proofs and ciphertexts to one use; and a
// machine's IDs. It holds names and tables only, no behaviour of a node
// or a client, and imports nothing of the project, so that every package
// down to fsm and shamir may use it.
//
// # Error kinds
//
// A Kind says why something failed, in a way each protocol can carry:
// REST answers {"error":{"kind","message"}} with the kind's HTTP status,
// gRPC with the kind's code and an ErrorInfo whose reason is the kind, kxd
// with the kind's HTTP status, and keyctl and keyagent exit with the
// kind's exit code. Kinds lists the kinds a node sends; LocalKinds the
// ones a client makes itself about its own failures (no node answered, an
// answer failed verification, its own configuration), which never cross
// the wire and so have an exit code but no HTTP status or gRPC code of
// their own.
//
// The exit codes are keyagent's, as documented since its first release:
// crypttab keyscripts and boot units may test them. keyctl uses the same
// code for the same kind, so a script reads 7 as "no quorum" from either
// program.
//
// # Machine IDs
//
// A machine (keyagent's Ed25519 key) has one ID shown to users: PrincipalID,
// the hex of the first 16 bytes of the SHA-256 of its public key, the same
// form as an operator's ID. keyagent enroll prints it, the cluster's state
// is keyed by it, and keyctl's machine and session commands show and take
// it. KlefkiMachineID ("SHA256:" and the base64 of the whole SHA-256) is
// the form klefki's gRPC protocol carries and signs over: the gRPC
// MachineService must keep speaking it to stock klefki clients, so it is
// accepted there and on keyctl's input, and shown nowhere else. The hex
// form was chosen because it is what the state, the log and every command
// already hold; changing it would rename every registered machine.
package vocab
