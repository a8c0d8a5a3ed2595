// Package e2e tests keyquorum end to end with real processes: it builds
// keyd, keyctl and keyagent, forms clusters of separate keyd processes on
// 127.0.0.1 with the deploy/local/cluster script, kills and restarts
// nodes with it, and drives the checks through the binaries the way an
// operator and a booting machine do, looking at their stdout, stderr and
// exit status. The gateways are driven by the stock programs users run:
// clevis, kxc and cryptsetup (on LUKS2 file images), and by the TLV and
// gRPC clients. It also runs "keyd dev" and uses the export lines it
// prints.
//
// The package has no code of its own besides its tests. They need bash
// (the cluster script is a bash script), a Go toolchain to build the
// binaries, and free loopback TCP and UDP ports, which they choose at run
// time. They take minutes, not seconds; "go test -short" skips them.
package e2e
