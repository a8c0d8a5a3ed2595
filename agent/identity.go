package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keyquorum/keyquorum/vocab"
)

// MachineID is the ID the cluster knows a machine by and users are shown
// (vocab.PrincipalID of its Ed25519 public key; see package vocab for the
// klefki form the gRPC flow speaks).
func MachineID(pub ed25519.PublicKey) string { return vocab.PrincipalID(pub) }

// LoadMachineKey reads a machine key: a PKCS#8 PEM "PRIVATE KEY" block
// holding an Ed25519 key.
func LoadMachineKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errorf(vocab.KindConfig, "machine key %s does not exist: run keyagent enroll", path)
		}
		return nil, errorf(vocab.KindConfig, "reading the machine key: %v", err)
	}
	key, err := parseMachineKey(b)
	if err != nil {
		return nil, errorf(vocab.KindConfig, "machine key %s: %v", path, err)
	}
	return key, nil
}

func parseMachineKey(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not Ed25519", k)
	}
	return key, nil
}

// MarshalMachineKey encodes a machine key as PKCS#8 PEM.
func MarshalMachineKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EnsureMachineKey returns the machine key at path, making it (mode 0600,
// its directory 0700 if missing) when there is none. created tells which.
// An existing file that is not a machine key is an error, never
// overwritten.
func EnsureMachineKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		key, err := LoadMachineKey(path)
		return key, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, errorf(vocab.KindConfig, "machine key: %v", err)
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	pemKey, err := MarshalMachineKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, errorf(vocab.KindConfig, "making the machine key's directory: %v", err)
	}
	// O_EXCL: two enrolls at once must not leave a key that differs from
	// the one printed.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, errorf(vocab.KindConfig, "writing the machine key: %v", err)
	}
	if _, err := f.Write(pemKey); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, errorf(vocab.KindConfig, "writing the machine key: %v", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, false, errorf(vocab.KindConfig, "writing the machine key: %v", err)
	}
	return key, true, nil
}
