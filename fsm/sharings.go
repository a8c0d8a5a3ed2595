package fsm

import (
	"strconv"
	"strings"
)

// Sharings are the scalars clients dealt to the share holders: an
// ed25519-frost key's (frost.go) and each version of a transit key
// (transit.go). Resharing rounds carry every sharing of the current epoch
// to the new holders by one code path (frostreshare.go), which names a
// sharing by its SharingRef.

// Sharing is one live sharing: its reference, its key and the sharing as
// the state holds it (shared with the state: read only).
type Sharing struct {
	Ref     string
	Key     *Key
	Sharing *FROSTKey
}

// SharingRef names version's sharing of transit key name, or with version
// 0 the sharing of ed25519-frost key name. A key name has no '#', so no
// reference is another's.
func SharingRef(name string, version uint64) string {
	if version == 0 {
		return name
	}
	return name + "#v" + strconv.FormatUint(version, 10)
}

// parseSharingRef is SharingRef's inverse.
func parseSharingRef(ref string) (name string, version uint64) {
	name, v, ok := strings.Cut(ref, "#v")
	if !ok {
		return ref, 0
	}
	version, err := strconv.ParseUint(v, 10, 64)
	if err != nil || version == 0 {
		return ref, 0
	}
	return name, version
}

// Sharings are the live sharings, keys in name order and a transit key's
// versions in order.
func (s *State) Sharings() []Sharing {
	if s.shared == nil {
		return sharingsOf(s, sortedKeys(s.Keys))
	}
	return sharingsOf(s, sortedKeys(s.shared))
}

// scanSharings is Sharings found by going through every key.
func scanSharings(s *State) []Sharing { return sharingsOf(s, sortedKeys(s.Keys)) }

// sharingsOf are the live sharings of the keys names (in their order).
func sharingsOf(s *State, names []string) []Sharing {
	var out []Sharing
	for _, name := range names {
		k := s.Keys[name]
		switch {
		case k.State == KeyDestroyed:
		case k.Frost() != nil:
			out = append(out, Sharing{Ref: SharingRef(name, 0), Key: k, Sharing: k.Frost()})
		case k.Transit() != nil:
			for _, v := range k.Transit().Versions {
				if v.Sharing != nil {
					out = append(out, Sharing{Ref: SharingRef(name, v.Version), Key: k, Sharing: v.Sharing})
				}
			}
		}
	}
	return out
}

// hasSharing reports whether key k (nil: none) has a live sharing.
func hasSharing(k *Key) bool {
	return k != nil && k.State != KeyDestroyed && (k.Frost() != nil || k.Transit() != nil)
}

// indexShared updates the index of keys with a sharing for the key name.
func (s *State) indexShared(name string) {
	if s.shared == nil {
		return
	}
	if hasSharing(s.Keys[name]) {
		s.shared[name] = struct{}{}
	} else {
		delete(s.shared, name)
	}
}

// SharingOf is the live sharing ref names, and its key; nil if none.
func (s *State) SharingOf(ref string) (*Key, *FROSTKey) {
	name, version := parseSharingRef(ref)
	k := s.Keys[name]
	switch {
	case k == nil || k.State == KeyDestroyed:
		return nil, nil
	case version == 0 && k.Frost() != nil:
		return k, k.Frost()
	case version != 0 && k.Transit() != nil:
		if v := k.Transit().Version(version); v != nil && v.Sharing != nil {
			return k, v.Sharing
		}
	}
	return nil, nil
}

// setSharing replaces the sharing ref names (which must be live), on a
// copy of its key (editKey): it writes nothing of the state in place
// (State).
func (t *transition) setSharing(ref string, fk *FROSTKey) {
	k, _ := t.s.SharingOf(ref)
	if k == nil {
		return
	}
	k = t.editKey(k.Name)
	defer t.keyChanged(k.Name)
	d := k.Detail()
	if d.Frost != nil {
		d.Frost = fk
	} else {
		_, version := parseSharingRef(ref)
		tk := *d.Transit
		tk.Versions = make([]TransitVersion, len(d.Transit.Versions))
		for i, v := range d.Transit.Versions {
			if v.Version == version {
				v.Sharing = fk
			}
			tk.Versions[i] = v
		}
		d.Transit = &tk
	}
	k.SetDetail(d)
}
