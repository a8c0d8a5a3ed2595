// Package kxddir is kxd's data model as the operator's client and the kxd
// gateway share it: Parse reads a kxd data directory (key, allowed_clients,
// allowed_hosts, email_to) for keyctl key import-kxd; Policy is a key's
// rules; KeyPath is kxd's rule for the key a request path names, which
// both the import (a key kxc could not ask for is refused) and the gateway
// (gateway/kxd) apply; OneLine makes a client's or a rule's value safe
// for one line.
package kxddir

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// The files of a kxd key directory.
const (
	kxdKeyFile     = "key"
	kxdClientsFile = "allowed_clients"
	kxdHostsFile   = "allowed_hosts"
	kxdEmailFile   = "email_to"
)

const (
	// MaxPath bounds the URL path of a request, so the key paths kxc can
	// ask for.
	MaxPath = 1024
	// fieldMax bounds what OneLine keeps: a value put in a log line, a
	// mail header, a mail line or a hook variable.
	fieldMax = 1024
)

// Entry is one key of a kxd data directory.
type Entry struct {
	Path   string // the key's path under the root, with slashes: "host1/disk"
	Key    []byte // the key file's bytes, exactly
	Policy Policy
}

// Parse reads a kxd data directory (kxd's --data_dir,
// /etc/kxd/data by default): every directory under root, at any depth,
// that holds a file named "key" is a key, whose path is the directory's
// path under root. Beside the key:
//
//   - allowed_clients: PEM certificates, each kept as DER. Text around the
//     blocks is ignored, as openssl writes it; a block that is not a
//     certificate or does not parse, or a non-empty file without any, is an
//     error naming the file. Missing: no client is allowed (kxd's rule).
//   - allowed_hosts: one IP address or host name per line; blank lines and
//     lines starting with '#' are skipped. Missing: Policy.AllowedHosts is
//     nil (every host); present but with no host: empty and non-nil (none).
//   - email_to: the lines holding an '@', trimmed; the others are ignored,
//     as kxd ignores them.
//
// Symbolic links to files are followed; links to directories are not
// walked. A key at the root itself, or whose path kxc could not ask for
// (with "..", control characters, or longer than kxd's limit), is an
// error. Parse reports every problem it finds, each with its file,
// and then returns no entries; errors never contain key bytes. Entries
// come in the lexical order of their paths.
func Parse(root string) ([]Entry, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("kxd data directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("kxd data directory %s is not a directory", root)
	}
	var entries []Entry
	var problems []error
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			problems = append(problems, err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		keyFile := filepath.Join(p, kxdKeyFile)
		st, err := os.Stat(keyFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			problems = append(problems, err)
			return nil
		case !st.Mode().IsRegular():
			problems = append(problems, fmt.Errorf("%s is not a regular file", keyFile))
			return nil
		}
		e, errs := parseKeyDir(root, p)
		if len(errs) > 0 {
			problems = append(problems, errs...)
			return nil
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		for i := range entries {
			clear(entries[i].Key)
		}
		return nil, errors.Join(problems...)
	}
	return entries, nil
}

// parseKeyDir reads one key directory, dir, under root.
func parseKeyDir(root, dir string) (Entry, []error) {
	var e Entry
	var problems []error
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return e, []error{err}
	}
	e.Path = filepath.ToSlash(rel)
	if rel == "." {
		problems = append(problems, fmt.Errorf("%s: a key at the root of the data directory has no path kxc could ask for", filepath.Join(dir, kxdKeyFile)))
	} else if KeyPathOf(e.Path) != e.Path {
		problems = append(problems, fmt.Errorf("%s: the key's path %q cannot be asked for by kxc (it must not hold \"..\" or control characters)", dir, OneLine(e.Path)))
	}

	key, err := os.ReadFile(filepath.Join(dir, kxdKeyFile))
	if err != nil {
		problems = append(problems, err)
	}

	clientsFile := filepath.Join(dir, kxdClientsFile)
	if data, err := os.ReadFile(clientsFile); err == nil {
		certs, err := parseKxdClients(data)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", clientsFile, err))
		}
		e.Policy.AllowedClients = certs
	} else if !errors.Is(err, fs.ErrNotExist) {
		problems = append(problems, err)
	}

	hostsFile := filepath.Join(dir, kxdHostsFile)
	if data, err := os.ReadFile(hostsFile); err == nil {
		hosts, err := parseKxdHosts(data)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", hostsFile, err))
		}
		e.Policy.AllowedHosts = hosts
	} else if !errors.Is(err, fs.ErrNotExist) {
		problems = append(problems, err)
	}

	emailFile := filepath.Join(dir, kxdEmailFile)
	if data, err := os.ReadFile(emailFile); err == nil {
		e.Policy.EmailTo = parseKxdEmailTo(data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		problems = append(problems, err)
	}

	if len(problems) > 0 {
		clear(key)
		return Entry{}, problems
	}
	e.Key = key
	return e, nil
}

// KeyPathOf is the key path a request for /v1/<p> names, "" if none.
func KeyPathOf(p string) string {
	keyPath, _ := KeyPath("/v1/" + p)
	return keyPath
}

// parseKxdClients reads the certificates of an allowed_clients file.
func parseKxdClients(data []byte) ([][]byte, error) {
	var certs [][]byte
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("PEM block %d is not a valid certificate: %v", n, err)
		}
		certs = append(certs, block.Bytes)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("PEM block %d is malformed (bad base64 or headers, or no END line)", len(certs)+1)
	}
	if len(certs) == 0 && len(bytes.TrimSpace(data)) > 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return certs, nil
}

// parseKxdHosts reads an allowed_hosts file: never nil, since the file is
// there.
func parseKxdHosts(data []byte) ([]string, error) {
	hosts := []string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsFunc(line, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("line %d: %q is not one host name or address", n, OneLine(line))
		}
		hosts = append(hosts, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return hosts, nil
}

// parseKxdEmailTo keeps the lines of an email_to file that hold an '@'.
func parseKxdEmailTo(data []byte) []string {
	var to []string
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); strings.Contains(line, "@") {
			to = append(to, line)
		}
	}
	return to
}

// Policy is a kxd key's access rules, as stored with the key in the
// cluster.
type Policy struct {
	// AllowedClients are DER certificates. A leaf allows the client that
	// presents exactly that certificate; a CA (basic constraints CA:TRUE)
	// allows the leaves it signed, directly or through intermediates the
	// client sends. Empty: no client is allowed.
	AllowedClients [][]byte
	// AllowedHosts are IP addresses or host names; names are resolved
	// forward at request time and compared with the TCP peer address.
	// nil: every host; empty and non-nil: none.
	AllowedHosts []string
	// EmailTo are the addresses told of every access.
	EmailTo []string
}

// KeyPath checks the URL path of a request as kxd does and returns the
// key's path without "/v1/". The cleaned path must start with "/v1/" and
// hold no ".." anywhere (so "a..b" is refused too, as kxd refuses it).
// Beyond kxd, it refuses control characters and paths longer than
// MaxPath, which no imported key can have.
func KeyPath(urlPath string) (string, bool) {
	if len(urlPath) > MaxPath {
		return "", false
	}
	p := path.Clean(urlPath)
	if !strings.HasPrefix(p, "/v1/") || strings.Contains(p, "..") {
		return "", false
	}
	keyPath := p[len("/v1/"):]
	if !pathChars(keyPath) {
		return "", false
	}
	return keyPath, true
}

// pathChars reports whether a key path is free of control characters
// and invalid UTF-8.
func pathChars(p string) bool {
	for _, c := range p {
		if c < 0x20 || c == 0x7f || c == 0xfffd {
			return false
		}
	}
	return true
}

// OneLine makes a value from a client or a key's rules safe for one
// header or line: control characters and invalid UTF-8 become '?', and it
// is cut at fieldMax bytes.
func OneLine(s string) string {
	var b strings.Builder
	for i, r := range s {
		if b.Len() >= fieldMax {
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' ||
			r == utf8.RuneError && !strings.HasPrefix(s[i:], "\ufffd") {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
