package cluster

import "github.com/keyquorum/keyquorum/cluster/pki"

// The cluster's PKI lives in package cluster/pki, which the operator's
// client uses without linking a node; these names keep cluster's own.

// Roles a certificate of the cluster CA can carry.
const (
	RoleNode     = pki.RoleNode
	RoleOperator = pki.RoleOperator
)

// CA is the cluster's certificate authority (pki.CA).
type CA = pki.CA

var (
	NewCA        = pki.NewCA
	LoadCA       = pki.LoadCA
	CertRole     = pki.CertRole
	SelfSigned   = pki.SelfSigned
	ParseCertPEM = pki.ParseCertPEM
	ParseKeyPEM  = pki.ParseKeyPEM
	KeyToPEM     = pki.KeyToPEM
)
