package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keyquorum/keyquorum/fsm"
	"github.com/keyquorum/keyquorum/gateway/console"
)

// EnvConsoleShots names the directory TestConsoleApprovesAWaitingMachine
// writes its screenshots into (default: the test's temporary directory).
const EnvConsoleShots = "KEYQUORUM_CONSOLE_SHOTS"

// chromium is Debian's chromium, which .ci/run installs.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium: apt-get install chromium (.ci/run does)")
	return ""
}

// browser is a headless chromium with a virtual WebAuthn authenticator
// (a passkey that verifies its user: a touch and a PIN).
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root
		// The nodes' certificates are of the cluster's own CA, for their
		// IP addresses; the console is asked at localhost, which
		// WebAuthn needs as its relying party (an IP address cannot be).
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	b := &browser{t: t, ctx: ctx}
	// The first Run starts the browser and must have no timeout.
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
			IsUserVerified: true, AutomaticPresenceSimulation: true,
		}})
		return err
	})); err != nil {
		t.Fatalf("starting chromium with a virtual authenticator: %v", err)
	}
	return b
}

// do runs steps with a bound on the whole.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// get runs one action that returns a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// eval evaluates js in the page, awaiting a promise.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	return get(b, "evaluate "+js, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

// waitFor waits until the page has an element sel, and fails with what
// the console's status line says if it does not come.
func (b *browser) waitFor(sel string) {
	b.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if eval[bool](b, fmt.Sprintf(`document.querySelector(%q) !== null`, sel)) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: no %s; the console says %q", sel, eval[string](b, `(document.getElementById("status") || {}).textContent || document.title`))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return get(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// TestConsoleApprovesAWaitingMachine drives the console in Debian's
// chromium with a virtual passkey against three real keyd processes:
// register the passkey (an admin signs the request with keyctl), sign in,
// see three healthy members, see a keyagent waiting, approve it once, and
// watch keyagent print the key. An assertion for another command, and a
// forged one, are refused through every node. Each page passes the checks
// users expect (CSP enforced, labels, keyboard, no mixed content) and is
// photographed at desktop and phone widths.
func TestConsoleApprovesAWaitingMachine(t *testing.T) {
	t.Parallel()
	needAgent(t)
	chromium(t)
	hostNetwork.RLock() // chromium aborts page loads when the host's networks change
	defer hostNetwork.RUnlock()
	shots := os.Getenv(EnvConsoleShots)
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, 3)
	s := newAgentSetup(t, c)
	secret := randomSecret(t, 32)
	createSecretKey(t, c, "disk1", secret)
	m := s.enroll(t, "host1", nil)
	c.mustKeyctl(1, "machine", "add", "host1", "--public-key", m.pub, "--key", "disk1", "--approval")
	m2 := s.enroll(t, "host2", nil)
	c.mustKeyctl(1, "machine", "add", "host2", "--public-key", m2.pub, "--key", "disk1", "--approval")

	_, port, _ := strings.Cut(c.addr(1), ":")
	site := "https://localhost:" + port
	b := newBrowser(t)

	// Register a passkey; an admin signs the request the page prints.
	b.do("register", chromedp.Navigate(site+"/ui/passkeys"),
		chromedp.SetValue(chromedp.CSS("#reg-operator"), operatorID(t, c)),
		chromedp.Click(chromedp.CSS(`#register button[type="submit"]`)))
	b.waitFor("#request:not([hidden])")
	command := get(b, "read the request", chromedp.Value(chromedp.CSS("#request-command")))
	args := strings.Fields(command)
	if len(args) != 4 || args[0] != "keyctl" || args[1] != "passkey" || args[2] != "add" {
		t.Fatalf("the passkey page printed %q, not a keyctl passkey add command", command)
	}
	// The admin lists the console origins explicitly (--origin), as for
	// nodes reached under names of their own: here every node's port at
	// localhost.
	var origins []string
	for i := 1; i <= 3; i++ {
		_, p, _ := strings.Cut(c.addr(i), ":")
		origins = append(origins, "--origin", "https://localhost:"+p)
	}
	if r := c.mustKeyctl(2, append(args[1:], origins...)...); !strings.Contains(string(r.stdout), "registered passkey") ||
		!strings.Contains(string(r.stdout), "origins https://localhost:") {
		t.Errorf("keyctl passkey add --origin: %v", r)
	}

	screenshots(t, b, shots, site+"/ui/signin", "signin")

	// Sign in; the cluster page shows three healthy members.
	b.do("sign in", chromedp.Navigate(site+"/ui/signin"), chromedp.Click(chromedp.CSS("#signin")))
	b.waitFor("#members")
	eventually(t, converge, "three healthy members on the cluster page", func() (bool, string) {
		b.do("reload", chromedp.Navigate(site+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#members")))
		n := eval[int](b, `document.querySelectorAll("#members tr.member.healthy").length`)
		return n == 3, fmt.Sprintf("%d healthy: %s", n, b.text("#members"))
	})
	if tol := b.text("#tolerance"); !strings.Contains(tol, "1 more holder") {
		t.Errorf("failure tolerance of 3 holders with t=2: %q, want 1", tol)
	}

	// A keyagent waits; the machines page shows it.
	agent := startAgent(t, s.configFile(t, s.config(m, s.servers(3), map[string]any{"wait": "3m"})), "-v")
	session := waitingOnConsole(t, b, site, m)
	agent.stillWaiting(t)
	checkPages(t, b, site, shots, "waiting")

	// Approve once: the passkey signs, every replica verifies, keyagent
	// prints the key.
	b.do("approve", chromedp.Navigate(site+"/ui/machines"), chromedp.Click(chromedp.CSS(session+` button[type="submit"]`)))
	b.waitFor(session + ".decided")
	if st := b.text("#status"); !strings.Contains(st, "approved") {
		t.Errorf("the console said %q after the approval", st)
	}
	code, out, stderr := agent.wait(t)
	if code != 0 || !bytes.Equal(out, secret) {
		t.Fatalf("keyagent after the approval: exit %d, stdout %x (want %x), stderr %q", code, out, secret, stderr)
	}
	// The node held each of keyagent's requests until the approval (or
	// its hold's end): keyagent never waited out its backoff, which grows
	// 1 s, 2 s, 4 s ... while the page checks above run, but asked again
	// within a second after each held answer.
	for l := range strings.SplitSeq(stderr, "\n") {
		if _, after, ok := strings.Cut(l, "asking again in "); ok {
			if d, err := time.ParseDuration(after); err != nil || d > time.Second {
				t.Errorf("keyagent waited its backoff, not for a held answer: %q", l)
			}
		}
	}
	screenshots(t, b, shots, site+"/ui/approvals", "approvals-after")

	// The audit page shows this node's own decision on the approval the
	// console submitted, from its hash-chained audit log, with the
	// operator's name.
	b.do("audit", chromedp.Navigate(site+"/ui/audit"), chromedp.WaitVisible(chromedp.CSS("#trail")))
	trail := eval[[]string](b, `Array.from(document.querySelectorAll("#trail tbody tr")).map(tr => Array.from(tr.cells).map(c => c.textContent.trim()).join(" | "))`)
	if !slices.ContainsFunc(trail, func(row string) bool {
		return strings.Contains(row, " | submit | local | ") && strings.Contains(row, " | approve | allowed")
	}) {
		t.Errorf("the audit page does not show the node's decision on the approval:\n%s", strings.Join(trail, "\n"))
	}
	screenshots(t, b, shots, site+"/ui/audit", "audit-after")

	// A genuine assertion of one command, moved onto another, and a
	// forged one, are refused through every node; the genuine one is
	// then taken. host2 stays waiting until then.
	var genuine struct {
		Payload           string `json:"payload"`
		Credential        string `json:"credential"`
		AuthenticatorData string `json:"authenticator_data"`
		ClientDataJSON    string `json:"client_data_json"`
		Signature         string `json:"signature"`
	}
	raw := eval[string](b, fmt.Sprintf(`(async () => JSON.stringify(await sign(await call("prepare", {action: "once", machine: %q, key: "disk1"}))))()`, m2.id))
	if err := json.Unmarshal([]byte(raw), &genuine); err != nil {
		t.Fatalf("the page's assertion %q: %v", raw, err)
	}
	dec := func(s string) []byte {
		out, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	opID := operatorID(t, c)
	assertion := func() *fsm.Assertion {
		return &fsm.Assertion{Credential: genuine.Credential, AuthenticatorData: dec(genuine.AuthenticatorData),
			ClientDataJSON: dec(genuine.ClientDataJSON), Signature: dec(genuine.Signature)}
	}
	for i := 1; i <= 3; i++ {
		other, err := json.Marshal(&fsm.Command{Type: fsm.TypeApprove, Nonce: randomSecret(t, 16), IssuedAt: time.Now().UnixNano(),
			Approve: &fsm.Approval{Machine: m2.id, Key: "disk1", Uses: 100}})
		if err != nil {
			t.Fatal(err)
		}
		forged := assertion()
		forged.Signature[len(forged.Signature)/2] ^= 1
		for name, sg := range map[string]*fsm.Signed{
			"an assertion for another command": {Signer: opID, Payload: other, WebAuthn: assertion()},
			"a forged assertion":               {Signer: opID, Payload: dec(genuine.Payload), WebAuthn: forged},
		} {
			if code := postApproval(t, c, i, sg); code != http.StatusUnauthorized {
				t.Errorf("%s through node %d: HTTP %d, want %d (unauthenticated)", name, i, code, http.StatusUnauthorized)
			}
		}
		m2cfg := s.configFile(t, s.config(m2, []string{c.addr(i)}, nil))
		checkAgentError(t, unlockWith(t, m2cfg, "disk1", "--wait", "0s"), 9, "keyctl session approve "+m2.id)
	}
	if code := postApproval(t, c, 2, &fsm.Signed{Signer: opID, Payload: dec(genuine.Payload), WebAuthn: assertion()}); code != http.StatusOK {
		t.Fatalf("the genuine assertion through node 2: HTTP %d", code)
	}
	m2cfg := s.configFile(t, s.config(m2, s.servers(3), nil))
	if r := unlockWith(t, m2cfg, "disk1"); r.code != 0 || !bytes.Equal(r.stdout, secret) {
		t.Errorf("host2 after the genuine approval: %v", r)
	}

	site2 := consoleUnderOtherNames(t, b, c, shots)
	consoleDecisions(t, b, c, s, site2, shots, secret)
}

// consoleUnderOtherNames registers a second passkey for nodes reached
// under names of their own: at node 1 as n1.kq.localhost, scoped to the
// domain they share (kq.localhost) and listing node 2's origin as
// n2.kq.localhost; then signs in with it at node 2 under that name, and
// returns node 2's console there. (Chromium resolves every *.localhost
// name to this machine, and makes WebAuthn assertions there over TLS
// whatever the certificate, as at localhost.)
func consoleUnderOtherNames(t *testing.T, b *browser, c *localCluster, shots string) string {
	t.Helper()
	_, p1, _ := strings.Cut(c.addr(1), ":")
	_, p2, _ := strings.Cut(c.addr(2), ":")
	site1, site2 := "https://n1.kq.localhost:"+p1, "https://n2.kq.localhost:"+p2
	b.do("register under kq.localhost", chromedp.Navigate(site1+"/ui/passkeys"),
		chromedp.SetValue(chromedp.CSS("#reg-operator"), operatorID(t, c)),
		chromedp.SetValue(chromedp.CSS("#reg-name"), "laptop"),
		chromedp.SetValue(chromedp.CSS("#reg-rpid"), "kq.localhost"),
		chromedp.SetValue(chromedp.CSS("#reg-origins"), site1+"\n"+site2),
		chromedp.Click(chromedp.CSS(`#register button[type="submit"]`)))
	b.waitFor("#request:not([hidden])")
	command := get(b, "read the request", chromedp.Value(chromedp.CSS("#request-command")))
	screenshots(t, b, shots, site1+"/ui/passkeys", "passkeys-other-names")
	args := strings.Fields(command)
	if len(args) != 4 || args[2] != "add" {
		t.Fatalf("the passkey page printed %q, not a keyctl passkey add command", command)
	}
	r := c.mustKeyctl(1, args[1:]...)
	if out := string(r.stdout); !strings.Contains(out, "relying party kq.localhost") || !strings.Contains(out, site2) {
		t.Fatalf("keyctl passkey add for kq.localhost: %v", r)
	}
	b.do("sign in at node 2 by its name", chromedp.Navigate(site2+"/ui/signin"), chromedp.Click(chromedp.CSS("#signin")))
	b.waitFor("#members")
	return site2
}

// consoleDecisions drives the console's other decisions on the same
// cluster, each for a keyagent waiting on a machine of its own, and checks
// their effect on the machine: a denial stops the keyagent with the
// denial; two uses let exactly two unlocks through; an approval for 30
// minutes lets the keyagent and the next unlock through, and the
// approvals page shows when it ends.
func consoleDecisions(t *testing.T, b *browser, c *localCluster, s *agentSetup, site, shots string, secret []byte) {
	t.Helper()
	enroll := func(name string) (machine, string) {
		m := s.enroll(t, name, nil)
		c.mustKeyctl(1, "machine", "add", name, "--public-key", m.pub, "--key", "disk1", "--approval")
		return m, s.configFile(t, s.config(m, s.servers(3), map[string]any{"wait": "3m"}))
	}
	decide := func(m machine, action string, fields map[string]string) {
		t.Helper()
		session := waitingOnConsole(t, b, site, m)
		steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(site + "/ui/machines"),
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`%s input[name="action"][value=%q]`, session, action)))}
		for name, v := range fields {
			steps = append(steps, chromedp.SetValue(chromedp.CSS(fmt.Sprintf(`%s input[name=%q]`, session, name)), v))
		}
		b.do(action, append(steps, chromedp.Click(chromedp.CSS(session+` button[type="submit"]`)))...)
		b.waitFor(session + ".decided")
	}

	// Deny: the waiting keyagent stops with the denial.
	m3, cfg3 := enroll("host3")
	agent := startAgent(t, cfg3)
	waitingOnConsole(t, b, site, m3)
	agent.stillWaiting(t)
	screenshots(t, b, shots, site+"/ui/machines", "machines-deciding")
	decide(m3, "deny", nil)
	if st := b.text("#status"); !strings.Contains(st, "denied") {
		t.Errorf("the console said %q after the denial", st)
	}
	if code, out, stderr := agent.wait(t); code != 5 || len(out) != 0 || !strings.Contains(stderr, "denied") {
		t.Errorf("keyagent after the denial: exit %d, stdout %x, stderr %q; want exit 5 (denied)", code, out, stderr)
	}

	// Two uses: the waiting keyagent, one more unlock, and no third.
	m4, cfg4 := enroll("host4")
	agent = startAgent(t, cfg4)
	decide(m4, "uses", map[string]string{"uses": "2"})
	if code, out, stderr := agent.wait(t); code != 0 || !bytes.Equal(out, secret) {
		t.Fatalf("keyagent after approving two uses: exit %d, stdout %x, stderr %q", code, out, stderr)
	}
	if r := unlockWith(t, cfg4, "disk1", "--wait", "0s"); r.code != 0 || !bytes.Equal(r.stdout, secret) {
		t.Errorf("the second of two uses: %v", r)
	}
	checkAgentError(t, unlockWith(t, cfg4, "disk1", "--wait", "0s"), 9, "keyctl session approve "+m4.id)

	// For 30 minutes: the keyagent and the next unlock; the approvals
	// page shows the window's end.
	m5, cfg5 := enroll("host5")
	agent = startAgent(t, cfg5)
	before := time.Now()
	decide(m5, "for", map[string]string{"minutes": "30"})
	if code, out, stderr := agent.wait(t); code != 0 || !bytes.Equal(out, secret) {
		t.Fatalf("keyagent after approving 30 minutes: exit %d, stdout %x, stderr %q", code, out, stderr)
	}
	if r := unlockWith(t, cfg5, "disk1", "--wait", "0s"); r.code != 0 || !bytes.Equal(r.stdout, secret) {
		t.Errorf("an unlock within the 30 minutes: %v", r)
	}
	b.do("approvals", chromedp.Navigate(site+"/ui/approvals"), chromedp.WaitVisible(chromedp.CSS("#approvals")))
	shown := eval[string](b, fmt.Sprintf(`(() => {
	  for (const tr of document.querySelectorAll("#approvals tbody tr"))
	    if (tr.cells[0].textContent.includes(%q)) return tr.cells[3].textContent.trim();
	  return "";
	})()`, m5.id))
	end, err := time.Parse("2006-01-02 15:04:05 UTC", shown)
	if err != nil || end.Before(before.Add(30*time.Minute).Truncate(time.Second)) || end.After(time.Now().Add(30*time.Minute)) {
		t.Errorf("the approvals page shows host5's window ending at %q (%v), want 30 minutes after the decision", shown, err)
	}
	for _, i := range eval[[]string](b, pageChecks) {
		t.Errorf("%s/ui/approvals: %s", site, i)
	}
	screenshots(t, b, shots, site+"/ui/approvals", "approvals-decisions")
}

// waitingOnConsole waits until machine m's waiting session is listed on
// the console's machines page, and returns its selector.
func waitingOnConsole(t *testing.T, b *browser, site string, m machine) string {
	t.Helper()
	session := fmt.Sprintf(`li.session[data-machine=%q]`, m.id)
	eventually(t, converge, "the waiting keyagent of "+m.id+" on the machines page", func() (bool, string) {
		b.do("reload", chromedp.Navigate(site+"/ui/machines"), chromedp.WaitVisible(chromedp.CSS("#machines")))
		n := eval[int](b, fmt.Sprintf(`document.querySelectorAll(%q).length`, session))
		return n == 1, "not listed yet"
	})
	return session
}

// runningAgent is a keyagent unlock running in the background.
type runningAgent struct {
	cancel context.CancelFunc
	ctx    context.Context
	done   chan error
	stdout bytes.Buffer
	stderr *syncBuffer
}

// startAgent runs keyagent unlock --config cfg --key disk1 (and args) in
// the background, for at most 4 minutes.
func startAgent(t *testing.T, cfg string, args ...string) *runningAgent {
	t.Helper()
	a := &runningAgent{done: make(chan error, 1), stderr: &syncBuffer{}}
	a.ctx, a.cancel = context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(a.cancel)
	cmd := exec.CommandContext(a.ctx, agentBin, append([]string{"unlock", "--config", cfg, "--key", "disk1"}, args...)...)
	cmd.Env = baseEnv()
	cmd.Stdout, cmd.Stderr = &a.stdout, a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- cmd.Wait() }()
	return a
}

// stillWaiting fails if the keyagent has returned.
func (a *runningAgent) stillWaiting(t *testing.T) {
	t.Helper()
	select {
	case err := <-a.done:
		t.Fatalf("keyagent returned before the decision: %v, stderr %q", err, a.stderr)
	default:
	}
}

// wait waits for the keyagent and returns its exit code and output.
func (a *runningAgent) wait(t *testing.T) (int, []byte, string) {
	t.Helper()
	select {
	case err := <-a.done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("keyagent: %v", err)
		}
		return code, a.stdout.Bytes(), a.stderr.String()
	case <-a.ctx.Done():
		t.Fatalf("keyagent did not finish after the console's decision; stderr %q", a.stderr)
	}
	return 0, nil, ""
}

// operatorID is the ID of the cluster's first operator, from its
// certificate's key.
func operatorID(t *testing.T, c *localCluster) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(c.envValue("KEYQUORUM_CLIENT_CERT"), c.envValue("KEYQUORUM_CLIENT_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	return fsm.PrincipalID(pair.PrivateKey.(ed25519.PrivateKey).Public().(ed25519.PublicKey))
}

// postApproval posts a signed approve to node i's REST API with the
// operator's certificate, as keyctl does, and returns the HTTP status.
func postApproval(t *testing.T, c *localCluster, i int, sg *fsm.Signed) int {
	t.Helper()
	body, err := json.Marshal(sg)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tlsConfig(true)}}
	resp, err := hc.Post("https://"+c.addr(i)+"/v1/approvals", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/approvals to node %d: %v", i, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// consolePages are the pages checked and photographed.
var consolePages = []string{"", "keys", "keys/disk1", "machines", "approvals", "passkeys", "audit"}

// checkPages runs the page checks on every page and photographs it.
func checkPages(t *testing.T, b *browser, site, shots, tag string) {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, p := range append(consolePages, "signin") {
		url := site + "/ui/" + p
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Content-Security-Policy"); got != console.CSP {
			t.Errorf("%s: Content-Security-Policy %q, want %q", url, got, console.CSP)
		}
	}
	for _, p := range consolePages {
		url := site + "/ui/" + p
		b.do("open "+url, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("main")))
		issues := eval[[]string](b, pageChecks)
		for _, i := range issues {
			t.Errorf("%s: %s", url, i)
		}
		checkKeyboard(t, b, url)
		name := strings.ReplaceAll(p, "/", "-")
		if name == "" {
			name = "cluster"
		}
		screenshots(t, b, shots, url, name+"-"+tag)
	}
}

// pageChecks returns what a page gets wrong: a control without a label,
// a resource or link off the console's origin or not over https, an
// inline script that runs despite the CSP.
const pageChecks = `(() => {
  const out = [];
  for (const el of document.querySelectorAll("input, select, textarea, button")) {
    const named = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") ||
      (el.tagName === "BUTTON" && el.textContent.trim() !== "");
    if (!named) out.push("control without a label: " + el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll("[src], [href], form[action]")) {
    const u = new URL(el.getAttribute("src") || el.getAttribute("href") || el.getAttribute("action"), location.href);
    if (u.protocol !== "https:" || u.origin !== location.origin) out.push("link or resource off the console: " + u.href);
  }
  for (const r of performance.getEntriesByType("resource")) {
    if (!r.name.startsWith(location.origin + "/")) out.push("loaded from elsewhere: " + r.name);
  }
  const s = document.createElement("script");
  s.textContent = "window.__inlineRan = true";
  document.body.appendChild(s);
  if (window.__inlineRan) out.push("an inline script ran: the CSP is not enforced");
  if (document.documentElement.lang === "") out.push("no lang attribute");
  return out;
})()`

// checkKeyboard tabs through a page: the first stop is the skip link,
// Enter on it moves focus to the main content, and every link, button
// and field (one radio of each group) is reached by Tab alone.
func checkKeyboard(t *testing.T, b *browser, url string) {
	t.Helper()
	want := eval[[]string](b, `(() => {
	  let i = 0; const seen = new Set(); const out = [];
	  for (const el of document.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")) {
	    if (el.tabIndex < 0 || el.disabled || el.closest("[hidden]")) continue;
	    if (el.type === "radio") { if (seen.has(el.form && el.name)) continue; seen.add(el.form && el.name); }
	    el.dataset.kbd = String(i++); out.push(el.dataset.kbd);
	  }
	  return out;
	})()`)
	reached := map[string]bool{}
	var first string
	for i := 0; i < len(want)+5; i++ {
		b.do("tab", chromedp.KeyEvent(kb.Tab))
		k := eval[string](b, `(document.activeElement && document.activeElement.dataset.kbd) || ""`)
		if i == 0 {
			first = eval[string](b, `document.activeElement.className`)
		}
		reached[k] = true
	}
	if first != "skip" {
		t.Errorf("%s: the first Tab stop is %q, not the skip link", url, first)
	}
	for _, k := range want {
		if !reached[k] {
			html := eval[string](b, fmt.Sprintf(`document.querySelector('[data-kbd="%s"]').outerHTML.slice(0, 100)`, k))
			t.Errorf("%s: Tab never reaches %s", url, html)
		}
	}
	b.do("skip link", chromedp.Focus(chromedp.CSS(".skip")), chromedp.KeyEvent(kb.Enter))
	focused := eval[string](b, `document.activeElement.id`)
	if focused != "main" {
		t.Errorf("%s: Enter on the skip link focuses %q, not the main content", url, focused)
	}
}

// screenshots photographs url at a desktop's and a phone's width.
func screenshots(t *testing.T, b *browser, dir, url, name string) {
	t.Helper()
	for _, size := range []struct {
		tag  string
		w, h int64
		dpr  float64
		mob  bool
	}{{"desktop", 1280, 900, 1, false}, {"phone", 390, 844, 2, true}} {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(size.dpr)}
		if size.mob {
			opts = append(opts, chromedp.EmulateMobile)
		}
		b.do("open "+url, chromedp.EmulateViewport(size.w, size.h, opts...), chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("main")))
		png := get(b, "screenshot "+url, chromedp.FullScreenshot(100))
		f := filepath.Join(dir, name+"-"+size.tag+".png")
		if err := os.WriteFile(f, png, 0o644); err != nil {
			t.Fatal(err)
		}
		if eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth + 1`) {
			t.Errorf("%s at %s width scrolls sideways: the page is wider than the screen", url, size.tag)
		}
	}
}
