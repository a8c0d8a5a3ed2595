// Package kubernetes checks the Kubernetes manifests of this directory:
// each document decodes strictly (no unknown or misspelt field) into the
// official API type of its kind, and they agree with each other and with
// keyd (the PodDisruptionBudget keeps t nodes, readiness means "can serve
// a release", the join tokens come from a Secret). No cluster is needed.
//
// The package holds only tests, so that no binary links k8s.io/api
// (TestBinariesDoNotLinkKubernetes).
package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded documents of every *.yaml here, by kind.
type manifests struct {
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	statefulSets map[string]*appsv1.StatefulSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
	policies     map[string]*networkingv1.NetworkPolicy
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		statefulSets: map[string]*appsv1.StatefulSet{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		policies: map[string]*networkingv1.NetworkPolicy{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			where := fmt.Sprintf("%s, document %d", f, i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj metav1.Object
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Service":
				o := &corev1.Service{}
				obj, m.services[name(t, doc)] = o, o
			case "v1 Secret":
				o := &corev1.Secret{}
				obj, m.secrets[name(t, doc)] = o, o
			case "apps/v1 StatefulSet":
				o := &appsv1.StatefulSet{}
				obj, m.statefulSets[name(t, doc)] = o, o
			case "policy/v1 PodDisruptionBudget":
				o := &policyv1.PodDisruptionBudget{}
				obj, m.pdbs[name(t, doc)] = o, o
			case "networking.k8s.io/v1 NetworkPolicy":
				o := &networkingv1.NetworkPolicy{}
				obj, m.policies[name(t, doc)] = o, o
			default:
				t.Fatalf("%s: kind %q %q has no check here", where, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s (%s): %v", where, tm.Kind, err)
			}
			if obj.GetName() == "" || obj.GetLabels()["app.kubernetes.io/name"] != "keyquorum" {
				t.Errorf("%s: %s %q needs a name and the label app.kubernetes.io/name=keyquorum", where, tm.Kind, obj.GetName())
			}
		}
	}
	return m
}

func name(t *testing.T, doc string) string {
	var o metav1.PartialObjectMetadata
	if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
		t.Fatal(err)
	}
	return o.Name
}

// TestManifestsDecodeStrictly: every document is a known kind that
// decodes with no unknown field, and the set is complete.
func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.statefulSets) != 1 || len(m.pdbs) != 1 || len(m.services) != 2 || len(m.secrets) != 1 || len(m.policies) != 1 {
		t.Fatalf("want one StatefulSet, one PodDisruptionBudget, two Services, one Secret, one NetworkPolicy; got %d, %d, %d, %d, %d",
			len(m.statefulSets), len(m.pdbs), len(m.services), len(m.secrets), len(m.policies))
	}
	// The strict decoder is strict: a misspelt field fails.
	bad := "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {minAvailabe: 2}\n"
	if err := yaml.UnmarshalStrict([]byte(bad), &policyv1.PodDisruptionBudget{}); err == nil {
		t.Fatal("a misspelt field decoded")
	}
}

func keyd(t *testing.T, m *manifests) (*appsv1.StatefulSet, *corev1.Container) {
	t.Helper()
	ss := m.statefulSets["keyquorum"]
	if ss == nil || len(ss.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("no StatefulSet keyquorum with one container")
	}
	return ss, &ss.Spec.Template.Spec.Containers[0]
}

// TestDisruptionBudgetKeepsT: voluntary evictions never leave fewer than
// t nodes, nor less than a Raft majority, and still let one node go (or
// no drain could proceed).
func TestDisruptionBudgetKeepsT(t *testing.T) {
	m := load(t)
	ss, _ := keyd(t, m)
	n := int(*ss.Spec.Replicas)
	th, err := strconv.Atoi(ss.Annotations["keyquorum.io/threshold"])
	if err != nil || th < 1 || th > n {
		t.Fatalf("keyquorum.io/threshold %q: want t of 1 to %d", ss.Annotations["keyquorum.io/threshold"], n)
	}
	if th != n/2+1 {
		t.Errorf("t=%d, but keyctl cluster init makes t = floor(n/2)+1 = %d for %d nodes", th, n/2+1, n)
	}
	pdb := m.pdbs["keyquorum"]
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.Type != intstr.Int || pdb.Spec.MaxUnavailable != nil {
		t.Fatal("the PodDisruptionBudget must set minAvailable as a number of pods, and no maxUnavailable")
	}
	want := max(th, n/2+1)
	if got := pdb.Spec.MinAvailable.IntValue(); got != want || got >= n {
		t.Errorf("minAvailable %d: want max(t=%d, majority=%d) = %d, below the %d replicas", got, th, n/2+1, want, n)
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labelSet(ss.Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget's selector does not select the StatefulSet's pods: %v", err)
	}
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// TestProbes: ready means "this node can serve a release" (keyd's /ready
// on the metrics port, which keyd is told to serve); alive means its API
// answers (keyd health).
func TestProbes(t *testing.T) {
	ss, c := keyd(t, load(t))
	_ = ss
	r := c.ReadinessProbe
	if r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/ready" {
		t.Fatal("the readiness probe must GET /ready")
	}
	port := containerPort(t, c, r.HTTPGet.Port)
	if env(c, "KEYQUORUM_METRICS_ADDR") != fmt.Sprintf("0.0.0.0:%d", port) {
		t.Errorf("KEYQUORUM_METRICS_ADDR %q does not serve the probe's port %d", env(c, "KEYQUORUM_METRICS_ADDR"), port)
	}
	l := c.LivenessProbe
	if l == nil || l.Exec == nil || !slices.Equal(l.Exec.Command[:2], []string{"/usr/local/bin/keyd", "health"}) {
		t.Error("the liveness probe must run keyd health")
	}
	if l != nil && l.TimeoutSeconds < 4 {
		t.Errorf("liveness timeout %ds: keyd health is given 3s", l.TimeoutSeconds)
	}
}

func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("no container port %s", p.String())
	return 0
}

func env(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// TestPodsSpreadAndJoinFromTheSecret: one node per machine (required
// anti-affinity on the host name), stable names from the headless
// Service, a join token per pod from the Secret, every KEYQUORUM_*
// variable a flag of keyd, and no root.
func TestPodsSpreadAndJoinFromTheSecret(t *testing.T) {
	m := load(t)
	ss, c := keyd(t, m)
	spec := ss.Spec.Template.Spec
	aa := spec.Affinity
	if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatal("want one required pod anti-affinity term")
	}
	term := aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if term.TopologyKey != "kubernetes.io/hostname" || err != nil || !sel.Matches(labelSet(ss.Spec.Template.Labels)) {
		t.Errorf("anti-affinity: topology %q, selector %v: want the host name and the StatefulSet's own pods", term.TopologyKey, err)
	}

	svc := m.services[ss.Spec.ServiceName]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("the StatefulSet's Service %q must be headless and publish pods that are not ready", ss.Spec.ServiceName)
	}
	if ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Error("pods must start in parallel: the first key waits for every initial node")
	}

	if !slices.Contains(c.Args, "--join-token-file=/etc/keyquorum/join/$(POD_NAME)") {
		t.Errorf("args %v: want the pod's join token file", c.Args)
	}
	var secretVolume string
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secretVolume = v.Secret.SecretName
			if v.Secret.Optional == nil || !*v.Secret.Optional {
				t.Error("the join Secret must be optional: joined nodes need no token, and the Secret is deleted then")
			}
		}
	}
	secret := m.secrets[secretVolume]
	if secret == nil {
		t.Fatalf("no Secret %q in the manifests", secretVolume)
	}
	for i := range int(*ss.Spec.Replicas) {
		if pod := fmt.Sprintf("%s-%d", ss.Name, i); secret.StringData[pod] == "" {
			t.Errorf("the Secret has no join token for pod %s", pod)
		}
	}

	src := keydSource(t)
	for _, e := range c.Env {
		if name, ok := strings.CutPrefix(e.Name, "KEYQUORUM_"); ok {
			flag := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			if !bytes.Contains(src, []byte(`"`+flag+`"`)) {
				t.Errorf("%s: keyd has no flag --%s", e.Name, flag)
			}
		}
	}
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Error("pods must run as the image's user 65532, never root")
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("the root file system must be read-only")
	}
}

func keydSource(t *testing.T) []byte {
	files, _ := filepath.Glob("../../cmd/keyd/*.go")
	var all []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestBinariesDoNotLinkKubernetes: k8s.io/api is for this test only.
func TestBinariesDoNotLinkKubernetes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") {
			t.Errorf("a binary links %s", dep)
		}
	}
}
