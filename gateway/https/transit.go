package https

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"hash"
	"net/http"
	"strconv"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/cluster/api"
	"github.com/keyquorum/keyquorum/cluster/metrics"
	"github.com/keyquorum/keyquorum/fsm"
)

// Transit paths (docs/transit.md), Vault transit's where they fit:
//
//	POST /v1/transit/encrypt/NAME          plaintext or batch_input -> ciphertext(s), with the
//	                                       key's public key (the plaintext passes this node, as
//	                                       with Vault; the Go client and keyctl encrypt locally)
//	POST /v1/transit/decrypt               a signed decryption request (op decrypt) -> t holders'
//	                                       answers sealed to its ephemeral key: the caller combines
//	POST /v1/transit/derive/NAME           a signed derivation request (op derive) for key NAME ->
//	                                       t holders' answers sealed to its ephemeral key: the
//	                                       caller combines and runs HKDF (client.TransitDerive)
//	POST /v1/transit/export/NAME           a signed export request (op export) for key NAME -> t
//	                                       holders' shares of the version sealed to its ephemeral
//	                                       key: the caller checks, combines and wraps the scalar
//	                                       to its wrapping key (client.TransitExport)
//	POST /v1/transit/exchange/NAME         a signed exchange request (op exchange: peers' X25519
//	                                       public keys) for the x25519 key NAME -> t holders'
//	                                       answers sealed to its ephemeral key: the caller
//	                                       combines (client.TransitExchange)
//	POST /v1/transit/sign/NAME             a signed request (op sign) for the ed25519-frost key NAME
//	                                       -> {"signature": "kq:vN:<base64>", "key_version"}: the
//	                                       FROST signing path (POST /v1/sign) with Vault's reply
//	POST /v1/transit/verify/NAME           {"input", "signature": "kq:vN:..."} -> {"valid"}
//	POST /v1/transit/datakey/plaintext/NAME  a fresh 256-bit key and its ciphertext
//	POST /v1/transit/datakey/wrapped/NAME    its ciphertext only
//	POST /v1/transit/rotate                a signed rotate_key (the client dealt the version)
//	POST /v1/transit/config                a signed configure_key (min_decryption_version)
//	POST /v1/transit/hash/{sha2-256,sha2-512}
//	POST /v1/transit/random/BYTES
//
// Creating a transit key is POST /v1/keys with a signed create_key, like
// every key. There is no REST rewrap: it needs the plaintext, which only
// the caller's client ever has (client.TransitRewrap).
func (s *Server) registerTransit(mux *http.ServeMux, ts cluster.TransitService) {
	mux.HandleFunc("POST /v1/transit/encrypt/{name...}", s.operator(s.transitEncrypt))
	mux.HandleFunc("POST /v1/transit/decrypt", s.operator(s.transitQuorum(ts.TransitDecrypt)))
	mux.HandleFunc("POST /v1/transit/derive/{name...}", s.operator(s.transitRelay(fsm.OpDerive, ts.TransitDerive)))
	mux.HandleFunc("POST /v1/transit/export/{name...}", s.operator(s.transitRelay(fsm.OpExport, ts.TransitExport)))
	mux.HandleFunc("POST /v1/transit/exchange/{name...}", s.operator(s.transitRelay(fsm.OpExchange, ts.TransitExchange)))
	mux.HandleFunc("POST /v1/transit/datakey/{kind}/{name...}", s.operator(s.transitDataKey))
	if sv, ok := ts.(cluster.SignService); ok {
		mux.HandleFunc("POST /v1/transit/sign/{name...}", s.operator(s.transitSign(sv)))
	}
	mux.HandleFunc("POST /v1/transit/verify/{name...}", s.operator(s.transitVerify))
	mux.HandleFunc("POST /v1/transit/rotate", s.operator(s.command(fsm.TypeRotateKey)))
	mux.HandleFunc("POST /v1/transit/config", s.operator(s.command(fsm.TypeConfigureKey)))
	mux.HandleFunc("POST /v1/transit/hash/{algorithm}", s.operator(s.transitHash))
	mux.HandleFunc("POST /v1/transit/random/{bytes}", s.operator(s.transitRandom))
}

// transitKey reads the metadata of the key the path names for the operator
// (op read).
func (s *Server) transitKey(r *http.Request) (*fsm.Key, error) {
	return s.svc.Key(r.Context(), principal(r).ID, r.PathValue("name"))
}

// serveLocal serves a transit operation this node answers by itself: do
// returns the reply, the key it used (nil: none) and the error to answer
// with; the operation is counted and timed as op (metrics.Op*) with that
// key's type and that error.
func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, op string, do func() (any, *fsm.Key, error)) {
	var (
		rep any
		k   *fsm.Key
		err error
	)
	defer func(start time.Time) {
		if s.metrics == nil {
			return
		}
		keyType := ""
		if k != nil {
			keyType = k.Type
		}
		s.metrics.Observe(r.Context(), op, keyType, start, err)
	}(time.Now())
	if rep, k, err = do(); err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) transitEncrypt(w http.ResponseWriter, r *http.Request) {
	s.serveLocal(w, r, metrics.OpEncrypt, func() (any, *fsm.Key, error) {
		var req api.TransitEncryptRequest
		if err := readJSON(r, &req); err != nil {
			return nil, nil, err
		}
		k, err := s.transitKey(r)
		if err != nil {
			return nil, nil, err
		}
		if req.BatchInput == nil {
			ct, err := api.TransitEncrypt(rand.Reader, k, req.Plaintext, req.Context)
			if err != nil {
				return nil, k, err
			}
			return api.TransitEncryptReply{Ciphertext: ct, KeyVersion: k.Version}, k, nil
		}
		if req.Plaintext != nil || req.Context != nil {
			return nil, k, cluster.Errorf(cluster.KindInvalid, "give plaintext or batch_input, not both")
		}
		out := api.TransitEncryptReply{KeyVersion: k.Version, BatchResults: make([]api.TransitBatchResult, len(req.BatchInput))}
		for i, it := range req.BatchInput {
			ct, err := api.TransitEncrypt(rand.Reader, k, it.Plaintext, it.Context)
			if err != nil {
				out.BatchResults[i].Error = api.Errorf(api.KindOf(err), "item %d: %s", i, errText(err))
				continue
			}
			out.BatchResults[i].Ciphertext = ct
		}
		return out, k, nil
	})
}

func errText(err error) string {
	if e, ok := err.(*cluster.Error); ok {
		return e.Message
	}
	return "internal error"
}

// transitQuorum serves a signed request that t holders answer, sealed to
// the caller, with no key in the path: a decryption (transitRelay serves
// the requests for the key a path names).
func (s *Server) transitQuorum(relay func(context.Context, *fsm.Signed) (*api.TransitDecryptReply, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sg, err := readSigned(r)
		if err != nil {
			s.writeError(w, err)
			return
		}
		rep, err := relay(r.Context(), sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	}
}

func (s *Server) transitDataKey(w http.ResponseWriter, r *http.Request) {
	key := make([]byte, api.TransitDataKeyBits/8)
	defer clear(key) // after the answer, which may carry it
	s.serveLocal(w, r, metrics.OpDataKey, func() (any, *fsm.Key, error) {
		kind := r.PathValue("kind")
		if kind != "plaintext" && kind != "wrapped" {
			return nil, nil, cluster.Errorf(cluster.KindInvalid, "a data key is plaintext or wrapped, not %q", kind)
		}
		var req api.TransitEncryptRequest
		if err := readJSON(r, &req); err != nil {
			return nil, nil, err
		}
		k, err := s.transitKey(r)
		if err != nil {
			return nil, nil, err
		}
		rand.Read(key)
		ct, err := api.TransitEncrypt(rand.Reader, k, key, req.Context)
		if err != nil {
			return nil, k, err
		}
		rep := api.TransitDataKeyReply{Ciphertext: ct, KeyVersion: k.Version}
		if kind == "plaintext" {
			rep.Plaintext = key
		}
		return rep, k, nil
	})
}

func (s *Server) transitHash(w http.ResponseWriter, r *http.Request) {
	s.serveLocal(w, r, metrics.OpHash, func() (any, *fsm.Key, error) {
		var h hash.Hash
		switch alg := r.PathValue("algorithm"); alg {
		case "sha2-256":
			h = sha256.New()
		case "sha2-512":
			h = sha512.New()
		default:
			return nil, nil, cluster.Errorf(cluster.KindInvalid, "hash algorithm %q: sha2-256 or sha2-512", alg)
		}
		var req api.TransitHashRequest
		if err := readJSON(r, &req); err != nil {
			return nil, nil, err
		}
		h.Write(req.Input)
		return api.TransitHashReply{Sum: hex.EncodeToString(h.Sum(nil))}, nil, nil
	})
}

func (s *Server) transitRandom(w http.ResponseWriter, r *http.Request) {
	s.serveLocal(w, r, metrics.OpRandom, func() (any, *fsm.Key, error) {
		n, err := strconv.Atoi(r.PathValue("bytes"))
		if err != nil || n < 1 || n > api.MaxTransitRandom {
			return nil, nil, cluster.Errorf(cluster.KindInvalid, "random bytes: 1 to %d, not %q", api.MaxTransitRandom, r.PathValue("bytes"))
		}
		b := make([]byte, n)
		rand.Read(b)
		return api.TransitRandomReply{RandomBytes: b}, nil, nil
	})
}

// signedForPath reads the body (readSigned) and checks that it is a
// signed request with op for the key the path names (by its name or its
// ID); it returns the request and that key's metadata: the path is
// Vault's, the signed request is what holders check.
func (s *Server) signedForPath(r *http.Request, op string) (*fsm.Signed, *fsm.Key, error) {
	sg, err := readSigned(r)
	if err != nil {
		return nil, nil, err
	}
	k, err := s.transitKey(r)
	if err != nil {
		return nil, nil, err
	}
	var cmd fsm.Command
	if err := json.Unmarshal(sg.Payload, &cmd); err != nil || cmd.Release == nil || cmd.Release.Op != op ||
		(cmd.Release.Key != k.Name && cmd.Release.Key != k.ID) {
		return nil, nil, cluster.Errorf(cluster.KindInvalid, "the body is not a signed request with op %q for key %q", op, k.Name)
	}
	return sg, k, nil
}

// transitRelay relays a signed request with op (derive, export, or an
// x25519 key's exchange) for the key the path names to t holders through
// relay (cluster.Node.TransitDerive, TransitExport, TransitExchange).
func (s *Server) transitRelay(op string, relay func(context.Context, *fsm.Signed) (*api.TransitDecryptReply, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sg, _, err := s.signedForPath(r, op)
		if err != nil {
			s.writeError(w, err)
			return
		}
		rep, err := relay(r.Context(), sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, rep)
	}
}

// transitSign signs by quorum with the ed25519-frost key the path names:
// the body is the caller's signed request (op sign) for that key, which
// every holder checks itself, as for POST /v1/sign.
func (s *Server) transitSign(sv cluster.SignService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sg, k, err := s.signedForPath(r, fsm.OpSign)
		if err == nil {
			err = api.TransitSigningKey(k)
		}
		if err != nil {
			s.writeError(w, err)
			return
		}
		sig, err := sv.Sign(r.Context(), sg)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, api.TransitSignReply{Signature: api.TransitSignature(sig), KeyVersion: sig.Version,
			PublicKey: sig.PublicKey, Signers: sig.Signers})
	}
}

// transitVerify checks a transit signature with the key's public key,
// for an operator who may read the key: {"valid": true}, or false with
// the reason.
func (s *Server) transitVerify(w http.ResponseWriter, r *http.Request) {
	s.serveLocal(w, r, metrics.OpVerify, func() (any, *fsm.Key, error) {
		var req api.TransitVerifyRequest
		if err := readJSON(r, &req); err != nil {
			return nil, nil, err
		}
		k, err := s.transitKey(r)
		if err != nil {
			return nil, nil, err
		}
		if err := api.TransitSigningKey(k); err != nil {
			return nil, k, err
		}
		if err := api.TransitVerify(k, req.Input, req.Signature); err != nil {
			return api.VerifyReply{Error: err.Error()}, k, nil // answered, and counted as served
		}
		return api.VerifyReply{Valid: true}, k, nil
	})
}
