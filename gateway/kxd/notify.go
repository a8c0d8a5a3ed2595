package kxd

// Notifications of kxd key accesses: an e-mail and a hook, as kxd sends.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/netip"
	"net/smtp"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyquorum/keyquorum/client/kxddir"
)

// DefaultNotifyTimeout bounds the e-mail and the hook, each, when
// Notifier.Timeout is zero.
const DefaultNotifyTimeout = 10 * time.Second

const (
	// kxdHookOutputMax bounds what is kept of a hook's output for the log.
	kxdHookOutputMax = 4 << 10
	// kxdHookWaitDelay bounds the wait for a killed hook's output pipes.
	kxdHookWaitDelay = time.Second
)

// Access is one granted access to a kxd key, as notifications tell of
// it. It holds no key material: notifications never carry the key.
type Access struct {
	Path    string                // the key's path, without "/v1/"
	Client  *x509.Certificate     // the leaf certificate the client proved it holds
	Addr    netip.AddrPort        // the TCP peer
	EmailTo []string              // the key's e-mail recipients
	Chains  [][]*x509.Certificate // the chains that allowed the client, leaf first
	Time    time.Time             // when the access was granted
}

// Notifier tells of kxd key accesses the way kxd does: on every
// granted access, that is a request that passed the path, key, host and
// certificate checks, it runs the hook and e-mails the key's EmailTo.
// Refused requests send no mail and run no hook (kxd's behaviour); the
// handler logs them. Notifications never contain key bytes.
//
// By default the notification comes once the cluster has released the key
// and before the key is written to the client; a relay or hook that fails
// is logged and the key is served anyway. Unlike kxd, whose failing mail
// answers 500 "Error sending notification", a relay that is down does not
// keep machines from booting. With HookVeto the hook gates the access as
// kxd's hook does.
//
// A nil or zero Notifier does nothing. Its fields must not change
// while it is in use.
type Notifier struct {
	// SMTPAddr is the mail relay's host:port; empty sends no e-mail. The
	// relay is used without authentication, with STARTTLS when it offers
	// it.
	SMTPAddr string
	// From is the sender of the e-mail, envelope and header.
	From string
	// SMTPTLS configures STARTTLS; nil verifies the relay's certificate
	// against the system roots for the relay's host name.
	SMTPTLS *tls.Config

	// Hook is a program run on every granted access: executed directly (no
	// shell, no arguments; a name without a slash is looked up in PATH),
	// with standard input empty and an environment holding only PATH and
	// kxd's variables:
	//
	//	KEY_PATH               the key's path, such as host1/disk
	//	REMOTE_ADDR            the client's ip:port
	//	MAIL_FROM              From
	//	EMAIL_TO               the key's recipients, separated by spaces
	//	CLIENT_CERT_SUBJECT    the leaf certificate's subject
	//	CLIENT_CERT_SIGNATURE  the leaf certificate's signature, in hex
	//	CHAIN_0, CHAIN_1, ...  each chain that allowed the leaf: subjects, leaf first, joined by " <- "
	//
	// and keyquorum's additions CLIENT_CERT_SHA256 (the SHA-256 of the
	// leaf's DER, in hex) and CLIENT_CERT_ISSUER. Empty runs none. Unlike
	// kxd, a configured hook that does not exist is an error, not skipped,
	// so that a typo cannot turn a veto off.
	Hook string
	// HookVeto makes the hook decide, as kxd's does: it runs before the
	// cluster is asked to release the key, and a hook that exits non-zero,
	// cannot start or runs out of time refuses the access with 403
	// "Prevented by hook". Without it the hook runs with the e-mail, and
	// its failure is only logged.
	HookVeto bool

	// Timeout bounds the e-mail and the hook, each; zero means
	// DefaultNotifyTimeout. A hook still running then is killed.
	Timeout time.Duration
}

func (n *Notifier) timeout() time.Duration {
	if n.Timeout > 0 {
		return n.Timeout
	}
	return DefaultNotifyTimeout
}

// vetoes reports whether the hook must allow each access first.
func (n *Notifier) vetoes() bool { return n != nil && n.Hook != "" && n.HookVeto }

// Notify tells of a granted access: it sends the e-mail (when SMTPAddr is
// set and the key has recipients) and runs the hook (unless HookVeto, as
// the hook then ran before), both at once, each within Timeout. It returns
// what failed; the caller logs it.
func (n *Notifier) Notify(ctx context.Context, a Access) error {
	if n == nil {
		return nil
	}
	var mailErr, hookErr error
	var wg sync.WaitGroup
	if n.SMTPAddr != "" && len(a.EmailTo) > 0 {
		wg.Go(func() { mailErr = n.sendMail(ctx, a) })
	}
	if n.Hook != "" && !n.HookVeto {
		wg.Go(func() { hookErr = n.runHook(ctx, a) })
	}
	wg.Wait()
	return errors.Join(mailErr, hookErr)
}

// runHook runs the hook for an access and returns why it failed, if it did.
func (n *Notifier) runHook(ctx context.Context, a Access) error {
	if n == nil || n.Hook == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, n.Hook)
	cmd.Env = n.hookEnv(a)
	out := &kxdCappedBuffer{max: kxdHookOutputMax}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = kxdHookWaitDelay
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("hook %s did not finish within %s and was killed", n.Hook, n.timeout())
	}
	if len(out.b) > 0 {
		return fmt.Errorf("hook %s: %v; its output: %q", n.Hook, err, out.b)
	}
	return fmt.Errorf("hook %s: %v", n.Hook, err)
}

// hookEnv is the hook's whole environment.
func (n *Notifier) hookEnv(a Access) []string {
	pathVar := os.Getenv("PATH")
	if pathVar == "" {
		pathVar = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env := []string{
		"PATH=" + pathVar,
		"KEY_PATH=" + kxdOneLine(a.Path),
		"REMOTE_ADDR=" + a.Addr.String(),
		"MAIL_FROM=" + kxdOneLine(n.From),
		"EMAIL_TO=" + kxdOneLine(strings.Join(a.EmailTo, " ")),
	}
	if c := a.Client; c != nil {
		env = append(env,
			"CLIENT_CERT_SUBJECT="+kxdSubject(c),
			"CLIENT_CERT_ISSUER="+kxdOneLine(c.Issuer.String()),
			"CLIENT_CERT_SIGNATURE="+hex.EncodeToString(c.Signature),
			"CLIENT_CERT_SHA256="+kxdFingerprint(c),
		)
	}
	for i, chain := range a.Chains {
		env = append(env, "CHAIN_"+strconv.Itoa(i)+"="+kxdChain(chain))
	}
	return env
}

// sendMail e-mails the key's recipients about an access through the relay.
func (n *Notifier) sendMail(ctx context.Context, a Access) error {
	from, err := mail.ParseAddress(n.From)
	if err != nil {
		return fmt.Errorf("e-mail sender %q is not an address: %v", n.From, err)
	}
	var rcpts []string
	var bad []error
	for _, to := range a.EmailTo {
		addr, err := mail.ParseAddress(to)
		if err != nil {
			bad = append(bad, fmt.Errorf("e-mail recipient %q is not an address: %v", kxdOneLine(to), err))
			continue
		}
		rcpts = append(rcpts, addr.Address)
	}
	if len(rcpts) == 0 {
		return errors.Join(bad...)
	}
	if err := n.deliver(ctx, from.Address, rcpts, kxdMessage(n.From, a)); err != nil {
		bad = append(bad, fmt.Errorf("sending the access e-mail through %s: %w", n.SMTPAddr, err))
	}
	return errors.Join(bad...)
}

// deliver hands one message to the relay, within Timeout.
func (n *Notifier) deliver(ctx context.Context, from string, rcpts []string, msg []byte) error {
	host, _, err := net.SplitHostPort(n.SMTPAddr)
	if err != nil {
		return fmt.Errorf("relay address is not host:port: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout())
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", n.SMTPAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := n.SMTPTLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("recipient %s: %w", r, err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write(msg); err != nil {
		return err
	}
	if err := wc.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// kxdMessage is the e-mail about an access: headers and a plain text body
// naming the key, the client's address and certificate, and the chains
// that allowed it. Lines end in "\n"; the SMTP client sends CRLF.
func kxdMessage(from string, a Access) []byte {
	var b strings.Builder
	to := make([]string, len(a.EmailTo))
	for i, t := range a.EmailTo {
		to[i] = kxdOneLine(t)
	}
	when := a.Time
	if when.IsZero() {
		when = time.Now()
	}
	fmt.Fprintf(&b, "From: %s\n", kxdOneLine(from))
	fmt.Fprintf(&b, "To: %s\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: %s\n", mime.QEncoding.Encode("utf-8", "Access to key "+kxdOneLine(a.Path)))
	fmt.Fprintf(&b, "Date: %s\n", when.Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\n")
	b.WriteString("Content-Transfer-Encoding: 8bit\n")
	b.WriteString("Auto-Submitted: auto-generated\n")
	b.WriteString("\n")
	fmt.Fprintf(&b, "Key: %s\n", kxdOneLine(a.Path))
	fmt.Fprintf(&b, "Accessed by: %s\n", a.Addr)
	fmt.Fprintf(&b, "On: %s\n", when.Format(time.RFC1123Z))
	if c := a.Client; c != nil {
		b.WriteString("\nClient certificate:\n")
		fmt.Fprintf(&b, "  Subject: %s\n", kxdSubject(c))
		fmt.Fprintf(&b, "  Issuer: %s\n", kxdOneLine(c.Issuer.String()))
		fmt.Fprintf(&b, "  Serial: %s\n", c.SerialNumber)
		fmt.Fprintf(&b, "  SHA-256: %s\n", kxdFingerprint(c))
		fmt.Fprintf(&b, "  Valid until: %s\n", c.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(a.Chains) > 0 {
		b.WriteString("\nAuthorizing chains:\n")
		for _, chain := range a.Chains {
			fmt.Fprintf(&b, "  %s\n", kxdChain(chain))
		}
	}
	return []byte(b.String())
}

// kxdSubject is a certificate's subject, safe for a log line, a mail or a
// variable.
func kxdSubject(c *x509.Certificate) string { return kxdOneLine(c.Subject.String()) }

// kxdFingerprint is the SHA-256 of a certificate's DER, in hex.
func kxdFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// kxdChain names a chain's certificates by subject, leaf first.
func kxdChain(chain []*x509.Certificate) string {
	names := make([]string, len(chain))
	for i, c := range chain {
		names[i] = kxdSubject(c)
	}
	return kxdOneLine(strings.Join(names, " <- "))
}

// kxdOneLine makes a value from a client or a key's rules safe for one
// header or line (kxddir.OneLine).
func kxdOneLine(s string) string { return kxddir.OneLine(s) }

// kxdCappedBuffer keeps the first max bytes written to it and drops the
// rest, so that a chatty hook cannot fill memory.
type kxdCappedBuffer struct {
	b   []byte
	max int
}

func (w *kxdCappedBuffer) Write(p []byte) (int, error) {
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
