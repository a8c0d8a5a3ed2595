package confirm

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/keyquorum/keyquorum/cluster/api"
)

// laggingAsker answers each member's status from a script: the member's
// i-th answer is script[id][min(i, last)]. It challenges no one: the views
// of these tests have no holders.
type laggingAsker struct {
	mu     sync.Mutex
	script map[string][]*api.Status
	calls  map[string]int
}

func (a *laggingAsker) Status(_ context.Context, m api.MemberStatus, _ []byte) (*api.Status, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	answers := a.script[m.ID]
	i := min(a.calls[m.ID], len(answers)-1)
	a.calls[m.ID]++
	return answers[i], nil
}

func (a *laggingAsker) Possession(context.Context, api.MemberStatus, []byte, []byte) (*api.Possession, error) {
	return nil, errors.New("no holder is challenged in these tests")
}

func (a *laggingAsker) callsOf(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[id]
}

func statusAt(node string, epoch, applied uint64) *api.Status {
	return &api.Status{Node: node, ClusterID: "c1", Epoch: epoch, Threshold: 2, PublicKey: []byte{byte(epoch)}, Applied: applied}
}

var members = []api.MemberStatus{{ID: "n1", APIAddr: "a1"}, {ID: "n2", APIAddr: "a2"}, {ID: "n3", APIAddr: "a3"}}

// TestAskWaitsForMembersBehindTheView: the view is read from n1 just after
// the first key epoch; n2 and n3 have not applied it yet (a heartbeat
// behind the leader) and show epoch 0 at a lower index. Ask asks them again
// until they show the view, instead of counting them as disagreeing
// (keyd's TestRetryJoinOverHTTPS failed so: "key epoch 0, not 1").
func TestAskWaitsForMembersBehindTheView(t *testing.T) {
	a := &laggingAsker{calls: map[string]int{}, script: map[string][]*api.Status{
		"n1": {statusAt("n1", 1, 10)},
		"n2": {statusAt("n2", 0, 7), statusAt("n2", 0, 8), statusAt("n2", 1, 10)},
		"n3": {statusAt("n3", 0, 9), statusAt("n3", 1, 11)},
	}}
	want := ViewOf(statusAt("n1", 1, 10))
	res := Ask(context.Background(), a, members, want, nil)
	if strings.Join(res.Agree, ",") != "n1,n2,n3" || len(res.Disagree) != 0 {
		t.Fatalf("agree %v, disagree %v; want every member to agree once caught up", res.Agree, res.Disagree)
	}
	if a.callsOf("n2") != 3 || a.callsOf("n3") != 2 {
		t.Errorf("asked n2 %d times and n3 %d times, want 3 and 2", a.callsOf("n2"), a.callsOf("n3"))
	}
}

// TestAskDoesNotWaitForMembersPastTheView: a member that differs from the
// view at or past the view's index has not merely lagged: it disagrees at
// its first answer, and a member that stays behind disagrees when the
// caller's context ends, saying how far behind it is.
func TestAskDoesNotWaitForMembersPastTheView(t *testing.T) {
	a := &laggingAsker{calls: map[string]int{}, script: map[string][]*api.Status{
		"n1": {statusAt("n1", 1, 10)},
		"n2": {statusAt("n2", 2, 12)},
		"n3": {statusAt("n3", 0, 4)},
	}}
	want := ViewOf(statusAt("n1", 1, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 3*catchUpPoll)
	defer cancel()
	res := Ask(ctx, a, members, want, nil)
	if strings.Join(res.Agree, ",") != "n1" || len(res.Disagree) != 2 {
		t.Fatalf("agree %v, disagree %v; want n1 alone to agree", res.Agree, res.Disagree)
	}
	if a.callsOf("n2") != 1 {
		t.Errorf("asked n2, past the view, %d times; want once", a.callsOf("n2"))
	}
	if !strings.Contains(res.Disagree[0], "key epoch 2, not 1") {
		t.Errorf("n2's disagreement: %q", res.Disagree[0])
	}
	if !strings.Contains(res.Disagree[1], "key epoch 0, not 1 (it has applied index 4, the view is at 10)") {
		t.Errorf("n3's disagreement: %q", res.Disagree[1])
	}
}
