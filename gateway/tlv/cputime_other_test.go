//go:build !unix

package tlv

import "time"

// cpuTime is not measured here: the benchmarks report no CPU metric.
func cpuTime() time.Duration { return 0 }
