package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keyquorum/keyquorum/vocab"
)

// The pin: the cluster ID and the cluster public key, which keyagent
// enroll records in the agent's config and every unlock checks the
// answer's polynomial against (Config.ClusterPublicKey).

// SavePin records the cluster ID and the cluster public key in the config
// file at path, keeping its other fields; a file that does not exist is
// made (mode 0600, its directory 0700 if missing) with the pin alone.
// changed is false when the file pinned them already. A file that pins
// another cluster is an error, never overwritten: a machine whose cluster
// was rebuilt is re-pinned by removing the old pin by hand.
func SavePin(path, clusterID string, key []byte) (changed bool, err error) {
	if clusterID == "" || len(key) != ClusterKeySize {
		return false, errorf(vocab.KindConfig, "a pin is a cluster ID and a %d-byte cluster public key", ClusterKeySize)
	}
	fields := map[string]json.RawMessage{}
	mode := fs.FileMode(0o600)
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		c, err := ParseConfig(old)
		if err != nil {
			return false, errorf(vocab.KindConfig, "%s: %v", path, err)
		}
		if err := json.Unmarshal(old, &fields); err != nil {
			return false, errorf(vocab.KindConfig, "%s: %v", path, err)
		}
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
		sameKey, sameID := bytes.Equal(c.ClusterPublicKey, key), c.ClusterID == clusterID
		if (len(c.ClusterPublicKey) > 0 && !sameKey) || (c.ClusterID != "" && !sameID) {
			return false, errorf(vocab.KindConfig,
				"%s pins another cluster (ID %q, public key %x), not %q with key %x: remove its cluster_id and cluster_public_key to pin this one",
				path, c.ClusterID, c.ClusterPublicKey, clusterID, key)
		}
		if sameKey && sameID {
			return false, nil
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return false, errorf(vocab.KindConfig, "making the config's directory: %v", err)
		}
	default:
		return false, errorf(vocab.KindConfig, "reading config: %v", err)
	}
	fields["cluster_id"], _ = json.Marshal(clusterID)
	fields["cluster_public_key"], _ = json.Marshal(key)
	out, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		return false, err
	}
	out = append(out, '\n')
	// Written beside and renamed over: a crash leaves the old file or the
	// new one, never half of either.
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, errorf(vocab.KindConfig, "writing the pin: %v", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(out)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return false, errorf(vocab.KindConfig, "writing the pin into %s: %v", path, err)
	}
	return true, nil
}
