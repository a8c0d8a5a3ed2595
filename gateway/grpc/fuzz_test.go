package grpc

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/keyquorum/keyquorum/cluster"
	keyquorumv1 "github.com/keyquorum/keyquorum/rpc/keyquorum/v1"
)

// FuzzHandlers feeds arbitrary protobuf to every handler that takes
// input, as the operator of the fake cluster: none may panic, and every
// refusal must carry a kind.
func FuzzHandlers(f *testing.F) {
	seed := func(m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&keyquorumv1.SubmitRequest{Command: &keyquorumv1.SignedCommand{Signer: "x", Payload: []byte(`{"type":"create_key","create_key":{"name":"k"}}`)}})
	seed(&keyquorumv1.CompareAndSwapRequest{Release: &keyquorumv1.SignedCommand{Payload: []byte(`{"type":"release"}`)}, Replace: &keyquorumv1.SignedCommand{}})
	seed(&keyquorumv1.CompareAndSwapRequest{Replace: &keyquorumv1.SignedCommand{Payload: []byte(`{"type":"replace_key"}`)}})
	seed(&keyquorumv1.GetKeyRequest{MachineId: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", Nonce: make([]byte, 16), SignedAt: 1, Signature: make([]byte, 64)})
	seed(&keyquorumv1.SubmitKeyRequest{MachineId: "SHA256:", EncryptedKey: []byte{1}})
	seed(&keyquorumv1.SubmitKeyRequest{MachineId: "SHA256:", EncryptedKey: []byte{1}, Command: &keyquorumv1.SignedCommand{Signer: "x", Payload: []byte(`{"type":"submit_key","submit_key":{"machine":"m","sealed":"AQ=="}}`)}})
	seed(&keyquorumv1.TransitDecryptRequest{Request: &keyquorumv1.SignedCommand{Signer: "x", Payload: []byte(`{"type":"release","release":{"key":"k","op":"decrypt"}}`)}})
	seed(&keyquorumv1.TransitDeriveRequest{Request: &keyquorumv1.SignedCommand{Signer: "x", Payload: []byte(`{"type":"release","release":{"key":"k","op":"derive"}}`)}})
	seed(&keyquorumv1.TransitExportRequest{Request: &keyquorumv1.SignedCommand{Signer: "x", Payload: []byte(`{"type":"release","release":{"key":"k","op":"export","version":1}}`)}})
	seed(&keyquorumv1.TransitExchangeRequest{Request: &keyquorumv1.SignedCommand{Signer: "x", Payload: []byte(`{"type":"release","release":{"key":"k","op":"exchange"}}`)}})
	f.Add([]byte{0x0a, 0xff})

	p := newPKI(f)
	svc := newFakeService(p)
	machines := &fakeMachines{keys: map[string]ed25519.PublicKey{}, submitted: map[string][]byte{}, sessions: map[string]Session{}}
	s := NewServer(svc, machines, nil)
	cs, ms := &clusterService{s: s}, &machineService{s: s}
	op, err := svc.Principal(context.Background(), p.admin.key.Public().(ed25519.PublicKey))
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.WithValue(context.Background(), principalKey{}, op)
	// A call with a capability token in its metadata (admitToken).
	tokenCtx := context.WithValue(context.Background(), tokenKey{}, []byte("token"))

	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, err error) {
			var ce *cluster.Error
			if err != nil && !errors.As(err, &ce) && !isStatus(err) {
				t.Errorf("%s: an error without a kind: %v", what, err)
			}
		}
		var submit keyquorumv1.SubmitRequest
		if proto.Unmarshal(b, &submit) == nil {
			_, err := cs.Submit(ctx, &submit)
			check("Submit", err)
		}
		var release keyquorumv1.ReleaseRequest
		if proto.Unmarshal(b, &release) == nil {
			_, err := cs.Release(ctx, &release)
			check("Release", err)
		}
		var cas keyquorumv1.CompareAndSwapRequest
		if proto.Unmarshal(b, &cas) == nil {
			_, err := cs.CompareAndSwap(ctx, &cas)
			check("CompareAndSwap", err)
		}
		var show keyquorumv1.ShowKeyRequest
		if proto.Unmarshal(b, &show) == nil && show.Name != "panic" && show.Name != "fail-plain" {
			_, err := cs.ShowKey(ctx, &show)
			check("ShowKey", err)
		}
		var decrypt keyquorumv1.TransitDecryptRequest
		if proto.Unmarshal(b, &decrypt) == nil {
			for _, ctx := range []context.Context{ctx, tokenCtx} {
				_, err := cs.TransitDecrypt(ctx, &decrypt)
				check("TransitDecrypt", err)
			}
		}
		var derive keyquorumv1.TransitDeriveRequest
		if proto.Unmarshal(b, &derive) == nil {
			for _, ctx := range []context.Context{ctx, tokenCtx} {
				_, err := cs.TransitDerive(ctx, &derive)
				check("TransitDerive", err)
			}
		}
		var export keyquorumv1.TransitExportRequest
		if proto.Unmarshal(b, &export) == nil {
			for _, ctx := range []context.Context{ctx, tokenCtx} {
				_, err := cs.TransitExport(ctx, &export)
				check("TransitExport", err)
			}
		}
		var exchange keyquorumv1.TransitExchangeRequest
		if proto.Unmarshal(b, &exchange) == nil {
			for _, ctx := range []context.Context{ctx, tokenCtx} {
				_, err := cs.TransitExchange(ctx, &exchange)
				check("TransitExchange", err)
			}
		}
		var getKey keyquorumv1.GetKeyRequest
		if proto.Unmarshal(b, &getKey) == nil {
			_, err := ms.GetKey(ctx, &getKey)
			check("GetKey", err)
		}
		var submitKey keyquorumv1.SubmitKeyRequest
		if proto.Unmarshal(b, &submitKey) == nil {
			_, err := ms.SubmitKey(ctx, &submitKey)
			check("SubmitKey", err)
		}
	})
}
