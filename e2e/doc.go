// Package e2e tests keyquorum end to end with real processes: it builds
// keyd and keyctl once, forms clusters of separate keyd processes on
// 127.0.0.1 with the deploy/local/cluster script, kills and restarts
// nodes with it, and drives every check through the keyctl binary the way
// an operator does, looking only at its stdout, stderr and exit status.
// It also runs "keyd dev" and uses the export lines it prints.
//
// The package has no code of its own besides its tests. They need bash
// (the cluster script is a bash script), a Go toolchain to build the
// binaries, and free loopback TCP and UDP ports, which they choose at run
// time. They take minutes, not seconds; "go test -short" skips them.
package e2e
