// Package keyquorumv1 is keyquorum's public gRPC API, version 1: the
// messages and service stubs generated from keyquorum.proto (whose header
// comment describes the transport, the authentication and the errors), and
// the signing input of a machine's GetKey request.
//
// keyquorum.pb.go and keyquorum_grpc.pb.go are generated: edit the .proto
// and run `make proto`; `make proto-check` fails when they are stale. The
// server is in gateway/grpc.
package keyquorumv1
