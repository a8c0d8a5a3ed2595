package console

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/cluster"
	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/vocab"
)

// fakeService answers what the console asks without a session; the
// methods it does not define panic if called.
type fakeService struct {
	cluster.ConsoleService
}

func (fakeService) Identity() cluster.Identity { return cluster.Identity{NodeID: "n1"} }

// TestDecisionCommands: the console's four decisions are the commands an
// operator's passkey signs; bad numbers are refused before any signing.
func TestDecisionCommands(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		d     decision
		check func(c *fsm.Command) bool
		kind  vocab.Kind
	}{
		{d: decision{Action: "once", Machine: "m", Key: "k"}, check: func(c *fsm.Command) bool {
			return c.Type == fsm.TypeApprove && c.Approve.Uses == 1 && c.Approve.Until == 0 && c.Approve.Machine == "m" && c.Approve.Key == "k"
		}},
		{d: decision{Action: "uses", Machine: "m", Uses: 5}, check: func(c *fsm.Command) bool {
			return c.Type == fsm.TypeApprove && c.Approve.Uses == 5 && c.Approve.Until == 0
		}},
		{d: decision{Action: "for", Machine: "m", Minutes: 30}, check: func(c *fsm.Command) bool {
			return c.Type == fsm.TypeApprove && c.Approve.Uses == 0 && c.Approve.Until == now.Add(30*time.Minute).UnixNano()
		}},
		{d: decision{Action: "deny", Machine: "m"}, check: func(c *fsm.Command) bool {
			return c.Type == fsm.TypeDeny && c.Deny.Until == now.Add(defaultDenial).UnixNano()
		}},
		{d: decision{Action: "uses", Machine: "m", Uses: 0}, kind: vocab.KindInvalid},
		{d: decision{Action: "uses", Machine: "m", Uses: fsm.MaxApprovalUses + 1}, kind: vocab.KindInvalid},
		{d: decision{Action: "for", Machine: "m", Minutes: 0}, kind: vocab.KindInvalid},
		{d: decision{Action: "approve-all", Machine: "m"}, kind: vocab.KindInvalid},
	} {
		c, summary, err := tc.d.command(now)
		if tc.kind != "" {
			if cluster.KindOf(err) != tc.kind {
				t.Errorf("%+v: %v, want %s", tc.d, err, tc.kind)
			}
			continue
		}
		if err != nil || !tc.check(c) || !strings.Contains(summary, "machine m") {
			t.Errorf("%+v: %+v %q %v", tc.d, c, summary, err)
		}
	}
}

// TestConsoleGuards: every response carries the CSP; pages need a
// session; the JSON calls take same-origin requests only; the script is
// served from the console itself.
func TestConsoleGuards(t *testing.T) {
	c := New(fakeService{}, nil)
	do := func(method, path, origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "https://node1:8443"+path, strings.NewReader("{}"))
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		if got := w.Header().Get("Content-Security-Policy"); got != CSP {
			t.Errorf("%s %s: CSP %q", method, path, got)
		}
		return w
	}
	for _, p := range []string{"/ui/", "/ui/keys", "/ui/machines", "/ui/approvals", "/ui/audit"} {
		if w := do("GET", p, ""); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/signin" {
			t.Errorf("GET %s without a session: %d %q", p, w.Code, w.Header().Get("Location"))
		}
	}
	if w := do("POST", "/ui/api/prepare", "https://evil.example"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), `"kind":"denied"`) {
		t.Errorf("a cross-origin call: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/ui/api/prepare", "https://node1:8443"); w.Code != http.StatusUnauthorized {
		t.Errorf("a call without a session: %d %s", w.Code, w.Body)
	}
	if w := do("GET", "/ui/static/console.js", ""); w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") {
		t.Errorf("the script: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w := do("GET", "/ui/signin", ""); w.Code != http.StatusOK || strings.Contains(w.Body.String(), "<script>") || strings.Contains(w.Body.String(), "http://") {
		t.Errorf("the sign-in page: %d, inline script or plain http", w.Code)
	}
}

// TestCustody: what the key page says about who can see a key.
func TestCustody(t *testing.T) {
	v := &cluster.ConsoleView{
		Getters:  map[string][]string{"luks/a": {"alice"}},
		Machines: []*fsm.Machine{{Name: "host1", Keys: []string{"luks/*"}, State: fsm.MachineActive}, {Name: "old", Keys: []string{"luks/*"}, State: fsm.MachineRevoked}},
	}
	got := strings.Join(Custody(&fsm.Key{Name: "luks/a", Type: fsm.KeyTypeSecret, KeyDetail: &fsm.KeyDetail{Access: &fsm.Access{Gateways: []string{fsm.GatewayKxd}}}}, v), "\n")
	for _, want := range []string{"operators alice", "Machines host1,", "kxd client"} {
		if !strings.Contains(got, want) {
			t.Errorf("custody of a secret lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, ", old") {
		t.Errorf("a revoked machine is listed:\n%s", got)
	}
	if got := Custody(&fsm.Key{Name: "t", Type: fsm.KeyTypeTang}, v); !strings.HasPrefix(got[0], "Nobody sees the Tang secret") {
		t.Errorf("custody of a Tang key: %q", got)
	}
	if got := Custody(&fsm.Key{Name: "x", Type: fsm.KeyTypeSecret}, &cluster.ConsoleView{}); !strings.HasPrefix(got[0], "Nobody") {
		t.Errorf("custody of a key nobody may release: %q", got)
	}
}

// TestEveryKindHasWords: the console words every error kind, the API's
// and the clients' own, but internal, which is "Something failed on this
// node".
func TestEveryKindHasWords(t *testing.T) {
	for _, k := range append(slices.Clone(vocab.Kinds), vocab.LocalKinds...) {
		w := Words(cluster.Errorf(k, "detail"))
		if generic := strings.HasPrefix(w, "Something failed"); generic != (k == vocab.KindInternal) || !strings.HasSuffix(w, "(detail)") {
			t.Errorf("kind %s reads %q", k, w)
		}
	}
}
