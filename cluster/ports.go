package cluster

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// FreeLoopbackPorts finds n distinct ports on 127.0.0.1 that are free for
// TCP and UDP (gossip uses both), for nodes on one machine (keyd dev, the
// tests). They are taken below the kernel's ephemeral range, which
// outgoing connections draw from: a port of that range, free now, can be
// taken by any program's connection before a node binds it, or before a
// restarted node binds it again. A port is never handed out twice by one
// process, and each is held until all are found. Nothing holds them
// afterwards, until a node binds them: it binds every port it is given
// when it starts (NewNode its node and gossip ports, keyd the API's and
// the gateways'), before it joins, so that the window in which another
// process may take one is the start's, not the join's, and a port taken
// in it is reported at the start (TestNewNodeReportsATakenPort).
func FreeLoopbackPorts(n int) ([]string, error) {
	var (
		out  []string
		held []io.Closer
	)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	low, high := 10000, EphemeralPortsStart()
	for range 1000 * n {
		if len(out) == n {
			return out, nil
		}
		port := low + rand.IntN(high-low)
		portsMu.Lock()
		given := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if given {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		held = append(held, l)
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		held = append(held, u)
		out = append(out, addr)
	}
	return nil, fmt.Errorf("found only %d of %d free loopback ports in %d-%d", len(out), n, low, high-1)
}

// portsGiven are the ports FreeLoopbackPorts has handed out in this
// process.
var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// EphemeralPortsStart is the first port of the kernel's ephemeral range
// (Linux's default, 32768, where it cannot be read or is implausibly low).
func EphemeralPortsStart() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return linuxDefault
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low < 20000 {
		return linuxDefault
	}
	return low
}
