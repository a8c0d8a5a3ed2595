package api

// The REST bodies of the transit paths (gateway/https, docs/transit.md),
// with Vault transit's field names. Bytes are base64 in JSON, as Vault's
// plaintext and context are.

// TransitEncryptRequest is the body of POST /v1/transit/encrypt/NAME:
// one plaintext, or a batch_input of items.
type TransitEncryptRequest struct {
	Plaintext  []byte             `json:"plaintext,omitempty"`
	Context    []byte             `json:"context,omitempty"`
	BatchInput []TransitBatchItem `json:"batch_input,omitempty"`
}

// TransitBatchItem is one item of a batch_input.
type TransitBatchItem struct {
	Plaintext  []byte `json:"plaintext,omitempty"`
	Ciphertext string `json:"ciphertext,omitempty"`
	Context    []byte `json:"context,omitempty"`
}

// TransitEncryptReply is the ciphertext, or batch_results with a
// ciphertext or an error per item.
type TransitEncryptReply struct {
	Ciphertext   string               `json:"ciphertext,omitempty"`
	KeyVersion   uint64               `json:"key_version,omitempty"`
	BatchResults []TransitBatchResult `json:"batch_results,omitempty"`
}

// TransitBatchResult is one item's result.
type TransitBatchResult struct {
	Ciphertext string `json:"ciphertext,omitempty"`
	Plaintext  []byte `json:"plaintext,omitempty"`
	Error      *Error `json:"error,omitempty"`
}

// TransitDataKeyReply is a data key: its ciphertext, and its plaintext
// unless only the wrapped key was asked for.
type TransitDataKeyReply struct {
	Plaintext  []byte `json:"plaintext,omitempty"`
	Ciphertext string `json:"ciphertext"`
	KeyVersion uint64 `json:"key_version"`
}

// TransitHashRequest is the body of POST /v1/transit/hash/ALGORITHM.
type TransitHashRequest struct {
	Input []byte `json:"input"`
}

// TransitHashReply is the digest, hex (Vault's default format).
type TransitHashReply struct {
	Sum string `json:"sum"`
}

// TransitRandomReply is random bytes from the node's CSPRNG.
type TransitRandomReply struct {
	RandomBytes []byte `json:"random_bytes"`
}

// Data key sizes and the random bytes one call returns at most.
const (
	TransitDataKeyBits = 256
	MaxTransitRandom   = 1 << 16
)
