package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults.
const (
	// DefaultConfigFile is where keyagent looks for its config file.
	DefaultConfigFile = "/etc/keyquorum/agent.json"
	// DefaultKeyFile is where keyagent keeps the machine's Ed25519 key.
	DefaultKeyFile = "/etc/keyquorum/machine.key"
	// DefaultPort is the API port of a server given without one.
	DefaultPort = 8740
	// DefaultTimeoutPerNode bounds one attempt at one node: connecting
	// (QUIC, then TCP), the release, and the answer.
	DefaultTimeoutPerNode = 5 * time.Second
	// DefaultWait is how long keyagent waits for an operator's approval.
	DefaultWait = 15 * time.Minute
	// DefaultQUICHeadStart is how long a QUIC handshake runs alone before
	// a TCP connection to the same node is tried beside it.
	DefaultQUICHeadStart = 300 * time.Millisecond
	// SRVService and SRVProto name the DNS SRV records keyagent looks up:
	// _keyquorum._tcp.DOMAIN.
	SRVService = "keyquorum"
	SRVProto   = "tcp"
)

// Config is how keyagent finds and trusts the cluster. In a file it is
// JSON with the tags below; durations are Go duration strings ("5s").
type Config struct {
	// Key is the name of the key to fetch when none is given on the
	// command line.
	Key string `json:"key,omitempty"`
	// Servers are nodes' API addresses, host:port (port DefaultPort if
	// left out).
	Servers []string `json:"servers,omitempty"`
	// SRV is a DNS domain whose _keyquorum._tcp SRV records name nodes.
	SRV string `json:"srv,omitempty"`
	// CA is the cluster CA certificate: a PEM file's path, or the PEM
	// itself. Empty: the system's roots.
	CA string `json:"ca,omitempty"`
	// KeyFile is the machine's Ed25519 key (PKCS#8 PEM).
	KeyFile string `json:"key_file,omitempty"`
	// ClusterPublicKey pins the cluster public key (base64 of the 32-byte
	// point; keyctl cluster pin prints it in hex, which keyagent enroll
	// --cluster-key takes). It is required: without it a coordinating node
	// could answer with a polynomial and a key of its own making.
	ClusterPublicKey []byte `json:"cluster_public_key,omitempty"`
	// ClusterID, if set, must be the cluster's ID in every answer;
	// keyagent enroll records it with the key.
	ClusterID string `json:"cluster_id,omitempty"`
	// TimeoutPerNode bounds one attempt at one node.
	TimeoutPerNode Duration `json:"timeout_per_node,omitempty"`
	// Wait bounds the wait for an operator's approval; 0 means do not
	// wait.
	Wait *Duration `json:"wait,omitempty"`
	// RetryFor keeps retrying, with backoff, while no node answers or the
	// cluster has no quorum (the network may still be coming up at
	// boot); 0 means one round over the servers.
	RetryFor Duration `json:"retry_for,omitempty"`
	// TCPOnly skips QUIC.
	TCPOnly bool `json:"tcp_only,omitempty"`
	// InOrder tries the servers in the order given (configured ones,
	// then SRV targets) instead of a random order: for a preferred nearby
	// node.
	InOrder bool `json:"in_order,omitempty"`
}

// ClusterKeySize is the size of the cluster public key: an edwards25519
// point.
const ClusterKeySize = 32

// ParseClusterKey reads a cluster public key given as hex (as keyctl
// cluster pin prints it) or base64 (as keyctl cluster status --json shows
// it).
func ParseClusterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == ClusterKeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == ClusterKeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("want the %d-byte cluster public key in hex (%d digits) or base64", ClusterKeySize, 2*ClusterKeySize)
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string, or reads a number of seconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "1m30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"5s\" or a number of seconds", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// ParseConfig reads a config from JSON. Unknown fields are refused, so
// that a misspelt field is not silently ignored.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config is not valid JSON for keyagent: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("config has data after its JSON object")
	}
	return &c, nil
}

// LoadConfig reads a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Merge returns c with the fields that o sets replacing c's. Servers
// given in o replace c's list.
func (c Config) Merge(o *Config) Config {
	if o == nil {
		return c
	}
	if o.Key != "" {
		c.Key = o.Key
	}
	if len(o.Servers) > 0 {
		c.Servers = o.Servers
	}
	if o.SRV != "" {
		c.SRV = o.SRV
	}
	if o.CA != "" {
		c.CA = o.CA
	}
	if o.KeyFile != "" {
		c.KeyFile = o.KeyFile
	}
	if len(o.ClusterPublicKey) > 0 {
		c.ClusterPublicKey = o.ClusterPublicKey
	}
	if o.ClusterID != "" {
		c.ClusterID = o.ClusterID
	}
	if o.TimeoutPerNode != 0 {
		c.TimeoutPerNode = o.TimeoutPerNode
	}
	if o.Wait != nil {
		w := *o.Wait
		c.Wait = &w
	}
	if o.RetryFor != 0 {
		c.RetryFor = o.RetryFor
	}
	if o.TCPOnly {
		c.TCPOnly = true
	}
	if o.InOrder {
		c.InOrder = true
	}
	return c
}

// WithDefaults fills what c leaves empty: the key file, the time per node
// and the approval wait.
func (c Config) WithDefaults() Config {
	if c.KeyFile == "" {
		c.KeyFile = DefaultKeyFile
	}
	if c.TimeoutPerNode == 0 {
		c.TimeoutPerNode = Duration(DefaultTimeoutPerNode)
	}
	if c.Wait == nil {
		w := Duration(DefaultWait)
		c.Wait = &w
	}
	return c
}

// ErrNoPin is the error of a config without a pinned cluster public key.
var ErrNoPin = errors.New("no pinned cluster public key: run keyagent enroll --cluster-key HEX --cluster-id ID " +
	"with the values keyctl cluster pin prints (or keyagent enroll --confirm), or give --cluster-public-key")

// Validate checks the config for an unlock: somewhere to find servers,
// well-formed addresses, a pinned 32-byte cluster public key (ErrNoPin
// without one), and no negative duration.
func (c *Config) Validate() error {
	if len(c.Servers) == 0 && c.SRV == "" {
		return fmt.Errorf("no servers: give servers in the config, --server, or --srv DOMAIN")
	}
	for _, s := range c.Servers {
		if _, err := normalizeAddr(s); err != nil {
			return err
		}
	}
	if n := len(c.ClusterPublicKey); n == 0 {
		return ErrNoPin
	} else if n != ClusterKeySize {
		return fmt.Errorf("cluster_public_key is %d bytes, want the %d-byte cluster public key", n, ClusterKeySize)
	}
	if c.TimeoutPerNode < 0 || c.RetryFor < 0 || (c.Wait != nil && *c.Wait < 0) {
		return fmt.Errorf("durations must not be negative")
	}
	return nil
}

// normalizeAddr checks a server address and adds the default port.
func normalizeAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("server address is empty")
	}
	if strings.Contains(s, "://") {
		return "", fmt.Errorf("server %q: want host:port, not a URL", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a host name, an IPv4 address, or a bare IPv6 address.
		if strings.Count(s, ":") > 1 && net.ParseIP(strings.Trim(s, "[]")) == nil {
			return "", fmt.Errorf("server %q: not host:port", s)
		}
		return net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(DefaultPort)), nil
	}
	if host == "" {
		return "", fmt.Errorf("server %q: no host", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("server %q: port %q is not a number from 1 to 65535", s, port)
	}
	return s, nil
}
