//go:build !unix

package api

import "time"

// cpuTime is unknown here: the benchmarks report only wall-clock rates.
func cpuTime() time.Duration { return 0 }
