package https

import (
	"net/http"
	"testing"

	"github.com/keyquorum/keyquorum/cluster"
)

// TestStatusOfEveryKind: no error kind falls through to 500 but internal,
// and the machine flow's kinds keep their REST statuses.
func TestStatusOfEveryKind(t *testing.T) {
	for _, k := range cluster.Kinds {
		if got := StatusOf(k); (got == http.StatusInternalServerError) != (k == cluster.KindInternal) {
			t.Errorf("StatusOf(%s) = %d", k, got)
		}
	}
	if StatusOf(cluster.KindPendingApproval) != http.StatusForbidden || StatusOf(cluster.KindClockSkew) != http.StatusUnauthorized {
		t.Errorf("pending_approval %d, clock_skew %d: want 403 and 401", StatusOf(cluster.KindPendingApproval), StatusOf(cluster.KindClockSkew))
	}
}
