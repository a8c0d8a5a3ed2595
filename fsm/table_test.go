package fsm_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyquorum/keyquorum/fsm"
)

// transitionCase is one row of a transition's table: a starting state
// built by applying commands, one entry, and either the refusal it gets or
// the change it makes.
type transitionCase struct {
	name  string
	setup func(h *harness) // the starting state; nil is a new FSM

	by    principal                     // who signs cmd
	cmd   *fsm.Command                  // the command; the harness adds Nonce and IssuedAt if unset
	cmdAt func(h *harness) *fsm.Command // instead of cmd, when the command depends on the state
	entry func(h *harness) []byte       // instead of by and cmd: a hand-made entry
	check func(t *testing.T, h *harness, res *fsm.Result)

	advance time.Duration // moves the entry time forward from the setup's
	code    fsm.Code      // the refusal; "" when the command takes effect
}

// runTransition runs a transition's table. For every row it also checks
// what holds for any command: a refusal carries its code and a message,
// returns no key and leaves the state as it was (apart from the applied
// index); an accepted command changes the state, and the very same entry
// applied again is a replay that changes nothing.
func runTransition(t *testing.T, cases []transitionCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			before := h.snapshot()
			h.at = h.at.Add(tc.advance)
			var data []byte
			switch {
			case tc.entry != nil:
				data = tc.entry(h)
			case tc.cmdAt != nil:
				data = h.entry(tc.by, tc.cmdAt(h))
			default:
				data = h.entry(tc.by, tc.cmd)
			}
			res := h.apply(data)
			if got := codeOf(res); got != tc.code {
				t.Fatalf("result code %q (%v), want %q", got, res.Error, tc.code)
			}
			after := h.snapshot()
			if tc.code != "" {
				if res.Error.Message == "" || !strings.HasPrefix(res.Error.Error(), string(tc.code)+": ") {
					t.Errorf("refusal %q does not say what was wrong", res.Error.Error())
				}
				if res.Key != nil {
					t.Errorf("a refusal returned key %+v", res.Key)
				}
				assertUnchanged(t, before, after)
			} else {
				ignore := []string{"applied", "chain", "nonces", "last_prune", "last_time"}
				if bytes.Equal(normalized(t, before, ignore...), normalized(t, after, ignore...)) {
					t.Errorf("an accepted %s changed nothing", tc.name)
				}
				again := h.apply(data)
				if codeOf(again) != fsm.CodeReplay {
					t.Errorf("the same entry applied twice: second result %v, want %q", again.Error, fsm.CodeReplay)
				}
				assertUnchanged(t, after, h.snapshot())
			}
			if tc.check != nil {
				tc.check(t, h, res)
			}
		})
	}
}

// Hand-made entries.

// unsigned is c by p with no signature.
func unsigned(p principal, c *fsm.Command) func(h *harness) []byte {
	return func(h *harness) []byte {
		sg := h.signed(p, c)
		sg.Signature = nil
		return encode(h.t, sg)
	}
}

// signedWith claims signer but signs with another principal's key.
func signedWith(signer string, key principal, c *fsm.Command) func(h *harness) []byte {
	return func(h *harness) []byte {
		return h.entry(principal{ID: signer, Key: key.Key}, c)
	}
}

// tampered is c signed by p, with its payload changed by change after
// signing.
func tampered(p principal, c *fsm.Command, change func(*fsm.Command)) func(h *harness) []byte {
	return func(h *harness) []byte {
		sg := h.signed(p, c)
		var cc fsm.Command
		if err := json.Unmarshal(sg.Payload, &cc); err != nil {
			h.t.Fatal(err)
		}
		change(&cc)
		payload, err := json.Marshal(&cc)
		if err != nil {
			h.t.Fatal(err)
		}
		sg.Payload = payload
		return encode(h.t, sg)
	}
}

// with returns c after change.
func with(c *fsm.Command, change func(*fsm.Command)) *fsm.Command {
	change(c)
	return c
}

// issued sets c's IssuedAt to t0 + d.
func issued(c *fsm.Command, d time.Duration) *fsm.Command {
	c.IssuedAt = t0.Add(d).UnixNano()
	return c
}

// Reading the state in checks.

func keyOf(t *testing.T, h *harness, name string) *fsm.Key {
	t.Helper()
	k := h.state().Keys[name]
	if k == nil {
		t.Fatalf("key %q is not in the state", name)
	}
	return k
}

func allowed(h *harness, p principal, op, name string) bool {
	var ok bool
	h.f.Read(func(s *fsm.State) { ok = s.Allowed(p.ID, op, name) })
	return ok
}

// refusedWith applies c by p and fails unless it is refused with code.
func refusedWith(t *testing.T, h *harness, p principal, c *fsm.Command, code fsm.Code) {
	t.Helper()
	if res := h.do(p, c); codeOf(res) != code {
		t.Errorf("%s by %s: %v, want %q", c.Type, p.ID, res.Error, code)
	}
}

var (
	longName = strings.Repeat("a", fsm.MaxNameLen+1)
	maxName  = strings.Repeat("a", fsm.MaxNameLen)
)
