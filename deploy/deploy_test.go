// Package deploy_test validates the deployment files in deploy/ with the
// tools' own libraries, offline: the Kubernetes manifests are built with
// kustomize (krusty) and decoded strictly into the typed k8s.io/api
// structs; docker-compose.yml is loaded by compose-go, which validates it
// against the Compose schema; haproxy.cfg and the Dockerfile are read by
// small parsers here. Docker and a cluster cannot run here; what can be
// checked without them is.
package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tidemark/tidemark/db"
)

// The server's defaults these files must agree with (cmd/tidemark).
const (
	defaultShutdownTimeout = 15 * time.Second
	defaultDrainDelay      = 5 * time.Second
	serverPort             = 8080
)

// kustomizations are every kustomization a deployment builds.
var kustomizations = []string{"k8s/base", "k8s/overlays/ap-southeast-2"}

// manifests is what one kustomization builds, each object decoded into its
// typed struct.
type manifests struct {
	deployments []appsv1.Deployment
	jobs        []batchv1.Job
	services    []corev1.Service
	secrets     []corev1.Secret
	configMaps  []corev1.ConfigMap
	namespaces  []corev1.Namespace
	pdbs        []policyv1.PodDisruptionBudget
	hpas        []autoscalingv2.HorizontalPodAutoscaler
}

// build runs kustomize on dir as `kustomize build` would, and decodes every
// object strictly: a field the typed struct does not know (a typo, a field
// at the wrong level) fails the build, as would an unexpected kind.
func build(t *testing.T, dir string) manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var m manifests
	for _, res := range resMap.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", res.CurId(), err)
		}
		kind := res.GetKind()
		apiVersion := res.GetApiVersion()
		var target any
		switch apiVersion + " " + kind {
		case "apps/v1 Deployment":
			m.deployments = append(m.deployments, appsv1.Deployment{})
			target = &m.deployments[len(m.deployments)-1]
		case "batch/v1 Job":
			m.jobs = append(m.jobs, batchv1.Job{})
			target = &m.jobs[len(m.jobs)-1]
		case "v1 Service":
			m.services = append(m.services, corev1.Service{})
			target = &m.services[len(m.services)-1]
		case "v1 Secret":
			m.secrets = append(m.secrets, corev1.Secret{})
			target = &m.secrets[len(m.secrets)-1]
		case "v1 ConfigMap":
			m.configMaps = append(m.configMaps, corev1.ConfigMap{})
			target = &m.configMaps[len(m.configMaps)-1]
		case "v1 Namespace":
			m.namespaces = append(m.namespaces, corev1.Namespace{})
			target = &m.namespaces[len(m.namespaces)-1]
		case "policy/v1 PodDisruptionBudget":
			m.pdbs = append(m.pdbs, policyv1.PodDisruptionBudget{})
			target = &m.pdbs[len(m.pdbs)-1]
		case "autoscaling/v2 HorizontalPodAutoscaler":
			m.hpas = append(m.hpas, autoscalingv2.HorizontalPodAutoscaler{})
			target = &m.hpas[len(m.hpas)-1]
		default:
			t.Fatalf("%s builds a %s %s, which this test does not know: add it here", dir, apiVersion, kind)
		}
		if err := yaml.UnmarshalStrict(y, target); err != nil {
			t.Fatalf("%s %s: %v\n%s", kind, res.GetName(), err, y)
		}
	}
	return m
}

func one[T any](t *testing.T, dir, kind string, items []T) *T {
	t.Helper()
	if len(items) != 1 {
		t.Fatalf("%s builds %d %s objects, want 1", dir, len(items), kind)
	}
	return &items[0]
}

func TestKubernetesManifests(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			m := build(t, dir)
			dep := one(t, dir, "Deployment", m.deployments)
			job := one(t, dir, "Job", m.jobs)
			svc := one(t, dir, "Service", m.services)
			secret := one(t, dir, "Secret", m.secrets)
			cm := one(t, dir, "ConfigMap", m.configMaps)
			pdb := one(t, dir, "PodDisruptionBudget", m.pdbs)
			hpa := one(t, dir, "HorizontalPodAutoscaler", m.hpas)

			for _, p := range checkServer(dep, cm, secret) {
				t.Error(p)
			}
			for _, p := range checkMigrateJob(job, dep, secret) {
				t.Error(p)
			}
			for _, p := range checkSelectors(dep, svc, pdb, hpa) {
				t.Error(p)
			}
			for _, p := range checkSecretPlaceholder(secret) {
				t.Error(p)
			}
			for _, p := range checkNamespaces(m) {
				t.Error(p)
			}
			if strings.Contains(dir, "overlays/") {
				// The migrate Job reads the ConfigMap (envFrom, checked
				// above): the overlay's regions reach it there.
				for _, p := range checkRegionsSetting(cm.Data["TIDEMARK_REGIONS"], cm.Data["TIDEMARK_SURVIVAL_GOAL"], []string{cm.Data["TIDEMARK_REGION"]}) {
					t.Error("ConfigMap: " + p)
				}
				if image := dep.Spec.Template.Spec.Containers[0].Image; strings.HasSuffix(image, ":latest") || !strings.Contains(image, ":") {
					t.Errorf("the overlay runs image %s: pin a tag, so the migrate Job and the pods run one binary", image)
				}
			}
		})
	}
}

// checkServer returns what is wrong with the server's Deployment: probes,
// grace period, security, and how it reads its settings and secrets.
func checkServer(dep *appsv1.Deployment, cm *corev1.ConfigMap, secret *corev1.Secret) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	spec := dep.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return []string{fmt.Sprintf("Deployment has %d containers, want 1", len(spec.Containers))}
	}
	c := spec.Containers[0]

	port, ok := containerPort(c, serverPort)
	if !ok {
		bad("container does not expose port %d", serverPort)
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			bad("%s: want an HTTP GET of %s", pr.name, pr.path)
			continue
		}
		g := pr.probe.HTTPGet
		if g.Path != pr.path {
			bad("%s asks %s, want %s", pr.name, g.Path, pr.path)
		}
		if !(g.Port.IntValue() == serverPort || (g.Port.IntValue() == 0 && g.Port.String() == port.Name && port.Name != "")) {
			bad("%s asks port %s, want the container's port %d", pr.name, g.Port.String(), serverPort)
		}
	}

	// The drain must finish before the kubelet's SIGKILL.
	settings := settingsOf(c, cm)
	shutdown := durationSetting(settings, "TIDEMARK_SHUTDOWN_TIMEOUT", defaultShutdownTimeout, &problems)
	drain := durationSetting(settings, "TIDEMARK_DRAIN_DELAY", defaultDrainDelay, &problems)
	if grace := spec.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second <= shutdown {
		bad("terminationGracePeriodSeconds must be above TIDEMARK_SHUTDOWN_TIMEOUT (%s)", shutdown)
	}
	// Readiness must turn false within the drain delay, or the load
	// balancer keeps sending new clients to a closed listener.
	if p := c.ReadinessProbe; p != nil {
		notice := time.Duration(max(p.PeriodSeconds, 1)*max(p.FailureThreshold, 1)) * time.Second
		if notice >= drain {
			bad("readiness notices a drain after %s, not within TIDEMARK_DRAIN_DELAY (%s)", notice, drain)
		}
	}
	if strategy := dep.Spec.Strategy.RollingUpdate; strategy == nil || strategy.MaxUnavailable == nil || strategy.MaxUnavailable.IntValue() != 0 {
		bad("the rolling update must keep every pod until its successor is ready (maxUnavailable: 0)")
	}

	problems = append(problems, checkSecurity("Deployment", spec, c)...)
	problems = append(problems, checkSecretsReferenced("Deployment", c, secret, "TIDEMARK_JWT_SECRET", "TIDEMARK_DATABASE_URL")...)
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		bad("the server needs CPU and memory requests and a memory limit (the HPA scales on CPU requests)")
	}
	return problems
}

// checkMigrateJob returns what is wrong with the migrate Job: it must run
// `tidemark migrate` of the same image, with the same settings, once.
func checkMigrateJob(job *batchv1.Job, dep *appsv1.Deployment, secret *corev1.Secret) []string {
	var problems []string
	spec := job.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return []string{fmt.Sprintf("Job has %d containers, want 1", len(spec.Containers))}
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Args, []string{"migrate"}) || len(c.Command) != 0 {
		problems = append(problems, fmt.Sprintf("Job runs %q %q, want the image's tidemark with args [migrate]", c.Command, c.Args))
	}
	if server := dep.Spec.Template.Spec.Containers[0]; c.Image != server.Image {
		problems = append(problems, fmt.Sprintf("Job runs image %s, the Deployment %s: the migrations must be the new binary's", c.Image, server.Image))
	}
	if spec.RestartPolicy != corev1.RestartPolicyNever && spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		problems = append(problems, "a Job's pods restart Never or OnFailure")
	}
	if p := job.Spec.Parallelism; p != nil && *p != 1 {
		problems = append(problems, "tidemark migrate takes no lock: run one at a time (parallelism 1)")
	}
	if job.Labels["app.kubernetes.io/component"] != "migrate" {
		problems = append(problems, "rollout.sh selects the Job by app.kubernetes.io/component=migrate")
	}
	server := dep.Spec.Template.Spec.Containers[0]
	if !slices.EqualFunc(c.EnvFrom, server.EnvFrom, func(a, b corev1.EnvFromSource) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		problems = append(problems, "the Job must read the server's settings (envFrom): migrate rebuilds memberships for the sync rules the server runs")
	}
	problems = append(problems, checkSecurity("Job", spec, c)...)
	problems = append(problems, checkSecretsReferenced("Job", c, secret, "TIDEMARK_DATABASE_URL")...)
	return problems
}

// checkSecurity returns what is wrong with a pod's security settings:
// non-root, read-only root filesystem, no privilege escalation.
func checkSecurity(what string, spec corev1.PodSpec, c corev1.Container) []string {
	var problems []string
	pod := spec.SecurityContext
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot || pod.RunAsUser == nil || *pod.RunAsUser == 0 {
		problems = append(problems, what+": the pod must run as a non-root user")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		problems = append(problems, what+": the root filesystem must be read-only")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		problems = append(problems, what+": allowPrivilegeEscalation must be false")
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		problems = append(problems, what+": drop ALL capabilities")
	}
	return problems
}

// checkSecretsReferenced returns a problem for each secret variable that is
// not read from the Secret by reference, or that a value anywhere inlines.
func checkSecretsReferenced(what string, c corev1.Container, secret *corev1.Secret, names ...string) []string {
	var problems []string
	for _, name := range names {
		found := false
		for _, e := range c.Env {
			if e.Name != name {
				continue
			}
			found = true
			ref := (*corev1.SecretKeySelector)(nil)
			if e.ValueFrom != nil {
				ref = e.ValueFrom.SecretKeyRef
			}
			switch {
			case e.Value != "" || ref == nil:
				problems = append(problems, fmt.Sprintf("%s: %s must come from the Secret (secretKeyRef), not a value", what, name))
			case ref.Name != secret.Name:
				problems = append(problems, fmt.Sprintf("%s: %s refers to Secret %s, which the build does not have (%s)", what, name, ref.Name, secret.Name))
			case secret.StringData[ref.Key] == "" && len(secret.Data[ref.Key]) == 0:
				problems = append(problems, fmt.Sprintf("%s: %s refers to key %s, which Secret %s lacks", what, name, ref.Key, secret.Name))
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("%s: %s is not set", what, name))
		}
	}
	return problems
}

// checkSecretPlaceholder returns a problem if the Secret holds anything
// that looks like a real value rather than a placeholder.
func checkSecretPlaceholder(secret *corev1.Secret) []string {
	var problems []string
	if len(secret.Data) > 0 {
		problems = append(problems, "the Secret has base64 data: keep only stringData placeholders in the repository")
	}
	for k, v := range secret.StringData {
		if !strings.Contains(v, "REPLACE-ME") {
			problems = append(problems, fmt.Sprintf("Secret %s: %s is not a REPLACE-ME placeholder", secret.Name, k))
		}
	}
	return problems
}

// checkSelectors returns what is wrong with how the Service, the PDB and
// the HPA find the Deployment's pods (and not the migrate Job's).
func checkSelectors(dep *appsv1.Deployment, svc *corev1.Service, pdb *policyv1.PodDisruptionBudget, hpa *autoscalingv2.HorizontalPodAutoscaler) []string {
	var problems []string
	podLabels := labels.Set(dep.Spec.Template.Labels)
	depSelector := labels.SelectorFromSet(dep.Spec.Selector.MatchLabels)
	if dep.Spec.Selector == nil || len(dep.Spec.Selector.MatchExpressions) > 0 || !depSelector.Matches(podLabels) {
		problems = append(problems, "the Deployment's selector must match its pod template's labels")
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		problems = append(problems, fmt.Sprintf("Service selector %v does not select the pods %v", svc.Spec.Selector, podLabels))
	}
	if pdb.Spec.Selector == nil || !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(podLabels) || len(pdb.Spec.Selector.MatchExpressions) > 0 {
		problems = append(problems, "the PodDisruptionBudget does not select the pods")
	}
	if pdb.Spec.Selector != nil && !slices.Equal(sortedKeys(pdb.Spec.Selector.MatchLabels), sortedKeys(dep.Spec.Selector.MatchLabels)) {
		problems = append(problems, "the PodDisruptionBudget's selector differs from the Deployment's")
	}
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != dep.Name {
		problems = append(problems, fmt.Sprintf("the HPA scales %s %s, not Deployment %s", ref.Kind, ref.Name, dep.Name))
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		problems = append(problems, "the HPA must keep 2 pods at least (the PDB lets one go)")
	}
	if dep.Spec.Replicas != nil {
		problems = append(problems, "the Deployment sets replicas, which every kubectl apply would reset under the HPA")
	}
	for _, port := range svc.Spec.Ports {
		if port.TargetPort.String() != "http" && port.TargetPort.IntValue() != serverPort {
			problems = append(problems, fmt.Sprintf("Service port %s targets %s, not the server's", port.Name, port.TargetPort.String()))
		}
	}
	// The server's PDB and Service must not catch the migrate Job's pods.
	if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set{"app.kubernetes.io/name": "tidemark", "app.kubernetes.io/component": "migrate"}) {
		problems = append(problems, "the Service selects the migrate Job's pods too")
	}
	return problems
}

// checkNamespaces returns a problem if the objects are spread over several
// namespaces (a namespaced overlay that missed an object).
func checkNamespaces(m manifests) []string {
	seen := map[string]bool{}
	for _, ns := range []string{m.deployments[0].Namespace, m.jobs[0].Namespace, m.services[0].Namespace, m.secrets[0].Namespace, m.configMaps[0].Namespace, m.pdbs[0].Namespace, m.hpas[0].Namespace} {
		seen[ns] = true
	}
	if len(seen) != 1 {
		return []string{fmt.Sprintf("objects are in several namespaces: %v", seen)}
	}
	for _, ns := range m.namespaces {
		if !seen[ns.Name] {
			return []string{fmt.Sprintf("Namespace %s is created but nothing is in it", ns.Name)}
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func containerPort(c corev1.Container, port int32) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// settingsOf is the container's environment as the server sees it: the
// ConfigMaps it reads, then its own env values.
func settingsOf(c corev1.Container, cm *corev1.ConfigMap) map[string]string {
	settings := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef != nil && from.ConfigMapRef.Name == cm.Name {
			for k, v := range cm.Data {
				settings[k] = v
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			settings[e.Name] = e.Value
		}
	}
	return settings
}

func durationSetting(settings map[string]string, name string, def time.Duration, problems *[]string) time.Duration {
	v, ok := settings[name]
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		*problems = append(*problems, fmt.Sprintf("%s=%q: %v", name, v, err))
		return def
	}
	return d
}

// TestManifestChecksCatchMistakes is the control: each mistake, made on a
// good build, must be reported by the checks above.
func TestManifestChecksCatchMistakes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mistake func(m *manifests)
		want    string
	}{
		{"readiness on /healthz", func(m *manifests) {
			m.deployments[0].Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/healthz"
		}, "readinessProbe asks /healthz"},
		{"liveness on another port", func(m *manifests) {
			m.deployments[0].Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port.StrVal = "metrics"
		}, "livenessProbe asks port metrics"},
		{"grace period within the shutdown timeout", func(m *manifests) {
			m.configMaps[0].Data["TIDEMARK_SHUTDOWN_TIMEOUT"] = "40s"
		}, "terminationGracePeriodSeconds must be above"},
		{"readiness slower than the drain", func(m *manifests) {
			m.deployments[0].Spec.Template.Spec.Containers[0].ReadinessProbe.PeriodSeconds = 10
		}, "not within TIDEMARK_DRAIN_DELAY"},
		{"secret inlined", func(m *manifests) {
			env := m.deployments[0].Spec.Template.Spec.Containers[0].Env
			for i := range env {
				if env[i].Name == "TIDEMARK_JWT_SECRET" {
					env[i].ValueFrom, env[i].Value = nil, "an-inlined-secret-of-more-than-32-chars"
				}
			}
		}, "TIDEMARK_JWT_SECRET must come from the Secret"},
		{"root filesystem writable", func(m *manifests) {
			f := false
			m.deployments[0].Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f
		}, "root filesystem must be read-only"},
		{"Service selects other pods", func(m *manifests) {
			m.services[0].Spec.Selector = map[string]string{"app.kubernetes.io/name": "other"}
		}, "does not select the pods"},
		{"PDB selects other pods", func(m *manifests) {
			m.pdbs[0].Spec.Selector.MatchLabels = map[string]string{"app": "tidemark"}
		}, "PodDisruptionBudget does not select"},
		{"HPA scales something else", func(m *manifests) {
			m.hpas[0].Spec.ScaleTargetRef.Name = "tidemark-old"
		}, "the HPA scales Deployment tidemark-old"},
		{"Job runs another image", func(m *manifests) {
			m.jobs[0].Spec.Template.Spec.Containers[0].Image = "tidemark:old"
		}, "the migrations must be the new binary's"},
		{"real secret committed", func(m *manifests) {
			m.secrets[0].StringData["TIDEMARK_JWT_SECRET"] = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
		}, "is not a REPLACE-ME placeholder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := build(t, "k8s/base")
			tc.mistake(&m)
			var problems []string
			problems = append(problems, checkServer(&m.deployments[0], &m.configMaps[0], &m.secrets[0])...)
			problems = append(problems, checkMigrateJob(&m.jobs[0], &m.deployments[0], &m.secrets[0])...)
			problems = append(problems, checkSelectors(&m.deployments[0], &m.services[0], &m.pdbs[0], &m.hpas[0])...)
			problems = append(problems, checkSecretPlaceholder(&m.secrets[0])...)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("no problem reported containing %q; got %q", tc.want, problems)
			}
		})
	}
}

// TestStrictDecodingRefusesUnknownFields is the control of the strict
// decoding: a field at the wrong level must fail, not vanish.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	misplaced := []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      containers:
        - name: x
          readinesProbe: {httpGet: {path: /readyz, port: 8080}}
`)
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(misplaced, &d); err == nil {
		t.Fatal("a misspelt readinessProbe decoded without error")
	}
}

// Compose.

func loadCompose(t *testing.T, env map[string]string) *composetypes.Project {
	t.Helper()
	dir, err := filepath.Abs("compose")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "docker-compose.yml")
	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	details := composetypes.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []composetypes.ConfigFile{{Filename: file, Content: content}},
		Environment: env,
	}
	// The loader validates the file against the Compose specification's
	// schema (unknown keys are errors) and checks that every dependency
	// names a service.
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("tidemark", true)
	})
	if err != nil {
		t.Fatalf("loading %s: %v", file, err)
	}
	return project
}

func TestComposeFile(t *testing.T) {
	project := loadCompose(t, map[string]string{"TIDEMARK_JWT_SECRET": "a-test-secret-of-at-least-32-characters"})

	var nodes, instances []composetypes.ServiceConfig
	for _, s := range project.Services {
		switch {
		case strings.HasPrefix(s.Image, "cockroachdb/cockroach") && slices.Contains(s.Command, "start"):
			nodes = append(nodes, s)
		case s.Image == "tidemark:local" && !slices.Contains(s.Command, "migrate"):
			instances = append(instances, s)
		}
	}
	localities := map[string]bool{}
	for _, n := range nodes {
		for _, arg := range n.Command {
			if v, ok := strings.CutPrefix(arg, "--locality="); ok {
				if !regexp.MustCompile(`^region=[a-z0-9-]+,zone=[a-z0-9-]+$`).MatchString(v) {
					t.Errorf("%s: locality %q wants region=...,zone=...", n.Name, v)
				}
				localities[v] = true
			}
		}
	}
	if len(nodes) != 3 || len(localities) != 3 {
		t.Errorf("want 3 CockroachDB nodes with 3 distinct localities, got %d nodes, localities %v", len(nodes), localities)
	}

	migrate, ok := project.Services["migrate"]
	if !ok || !slices.Equal(migrate.Command, []string{"migrate"}) {
		t.Fatalf("want a migrate service running `tidemark migrate`, got %v", migrate.Command)
	}
	if dep, ok := migrate.DependsOn["crdb-init"]; !ok || dep.Condition != composetypes.ServiceConditionCompletedSuccessfully {
		t.Error("migrate must wait for crdb-init to complete")
	}
	var regions []string
	for l := range localities {
		region, _, _ := strings.Cut(strings.TrimPrefix(l, "region="), ",")
		regions = append(regions, region)
	}
	setting := func(name string) string {
		if v := migrate.Environment[name]; v != nil {
			return *v
		}
		return ""
	}
	for _, p := range checkRegionsSetting(setting("TIDEMARK_REGIONS"), setting("TIDEMARK_SURVIVAL_GOAL"), regions) {
		t.Error("migrate: " + p)
	}
	if got := strings.Split(setting("TIDEMARK_REGIONS"), ","); len(got) != len(regions) {
		t.Errorf("migrate: TIDEMARK_REGIONS=%q, want exactly the nodes' regions %v", setting("TIDEMARK_REGIONS"), regions)
	}
	if len(instances) != 2 {
		t.Fatalf("want 2 Tidemark instances, got %d", len(instances))
	}
	for _, s := range instances {
		for _, p := range checkComposeInstance(s) {
			t.Errorf("%s: %s", s.Name, p)
		}
	}

	lb, ok := project.Services["lb"]
	if !ok {
		t.Fatal("no lb service")
	}
	for _, s := range instances {
		if _, ok := lb.DependsOn[s.Name]; !ok {
			t.Errorf("lb does not depend on %s", s.Name)
		}
	}
	if len(lb.Ports) != 1 || lb.Ports[0].Target != serverPort {
		t.Errorf("lb publishes %v, want the one port %d", lb.Ports, serverPort)
	}
	var names []string
	for _, s := range instances {
		names = append(names, s.Name)
	}
	cfg, err := os.ReadFile("compose/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkHAProxy(string(cfg), names, defaultDrainDelay) {
		t.Error("haproxy.cfg: " + p)
	}
	mounted := false
	for _, v := range lb.Volumes {
		mounted = mounted || (filepath.Base(v.Source) == "haproxy.cfg" && v.Target == "/usr/local/etc/haproxy/haproxy.cfg")
	}
	if !mounted {
		t.Error("lb does not mount haproxy.cfg where HAProxy reads it")
	}
}

// TestComposeLoaderRefusesMistakes is the control of the loading: the
// loader must refuse a file without the secret, and an unknown key.
func TestComposeLoaderRefusesMistakes(t *testing.T) {
	dir, err := filepath.Abs("compose")
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	load := func(content string, env map[string]string) error {
		_, err := loader.LoadWithContext(context.Background(), composetypes.ConfigDetails{
			WorkingDir:  dir,
			ConfigFiles: []composetypes.ConfigFile{{Filename: "docker-compose.yml", Content: []byte(content)}},
			Environment: env,
		}, func(o *loader.Options) { o.SetProjectName("tidemark", true) })
		return err
	}
	if err := load(string(content), map[string]string{}); err == nil || !strings.Contains(err.Error(), "TIDEMARK_JWT_SECRET") {
		t.Errorf("loading without TIDEMARK_JWT_SECRET: %v, want an error naming it", err)
	}
	env := map[string]string{"TIDEMARK_JWT_SECRET": "a-test-secret-of-at-least-32-characters"}
	misspelt := strings.Replace(string(content), "stop_grace_period:", "stop_grace_periods:", 1)
	if misspelt == string(content) {
		t.Fatal("no stop_grace_period in docker-compose.yml")
	}
	if err := load(misspelt, env); err == nil {
		t.Error("a misspelt key loaded without error")
	}
	unknownDependency := strings.Replace(string(content), "      crdb-init:\n        condition: service_completed_successfully", "      crdb-bootstrap:\n        condition: service_completed_successfully", 1)
	if unknownDependency == string(content) {
		t.Fatal("migrate's dependency on crdb-init not found")
	}
	if err := load(unknownDependency, env); err == nil {
		t.Error("a dependency on a missing service loaded without error")
	}
}

// checkComposeInstance returns what is wrong with one Tidemark instance.
func checkComposeInstance(s composetypes.ServiceConfig) []string {
	var problems []string
	if dep, ok := s.DependsOn["migrate"]; !ok || dep.Condition != composetypes.ServiceConditionCompletedSuccessfully {
		problems = append(problems, "must depend on migrate (condition service_completed_successfully)")
	}
	if url := s.Environment["TIDEMARK_DATABASE_URL"]; url == nil || !strings.Contains(*url, ":26257/") {
		problems = append(problems, "TIDEMARK_DATABASE_URL must name a CockroachDB node")
	}
	if v := s.Environment["TIDEMARK_JWT_SECRET"]; v == nil || len(*v) < 32 {
		problems = append(problems, "TIDEMARK_JWT_SECRET must come from the environment (.env), 32+ characters")
	}
	if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= defaultShutdownTimeout {
		problems = append(problems, "stop_grace_period must be above TIDEMARK_SHUTDOWN_TIMEOUT")
	}
	if !s.ReadOnly {
		problems = append(problems, "read_only: the server writes nothing to its filesystem")
	}
	return problems
}

// TestComposeChecksCatchMistakes is the control of checkComposeInstance.
func TestComposeChecksCatchMistakes(t *testing.T) {
	project := loadCompose(t, map[string]string{"TIDEMARK_JWT_SECRET": "a-test-secret-of-at-least-32-characters"})
	s := project.Services["tidemark-eu-north-1"]
	if p := checkComposeInstance(s); len(p) != 0 {
		t.Fatalf("the good instance has problems: %v", p)
	}
	delete(s.DependsOn, "migrate")
	if p := checkComposeInstance(s); !slices.ContainsFunc(p, func(p string) bool { return strings.Contains(p, "depend on migrate") }) {
		t.Errorf("an instance that does not wait for migrate passed: %v", p)
	}
}

// haproxySections splits haproxy.cfg into its sections ("backend tidemark"
// and so on), each a list of its lines without comments.
func haproxySections(cfg string) map[string][]string {
	sections := map[string][]string{}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(cfg))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			current = strings.Join(strings.Fields(line), " ")
			sections[current] = nil
			continue
		}
		sections[current] = append(sections[current], strings.Join(strings.Fields(line), " "))
	}
	return sections
}

// checkHAProxy returns what is wrong with the load balancer's configuration
// for Tidemark: websockets passed and kept open, every instance
// health-checked on /readyz quickly enough to notice a drain.
func checkHAProxy(cfg string, instances []string, drain time.Duration) []string {
	var problems []string
	sections := haproxySections(cfg)
	defaults := sections["defaults"]
	if !slices.Contains(defaults, "mode http") {
		problems = append(problems, "defaults: mode http")
	}
	tunnel := time.Duration(0)
	for _, l := range defaults {
		if v, ok := strings.CutPrefix(l, "timeout tunnel "); ok {
			tunnel, _ = time.ParseDuration(v)
		}
	}
	if tunnel < 10*time.Minute {
		problems = append(problems, "timeout tunnel must keep idle websockets open for minutes (want >= 10m)")
	}
	var frontend, backend []string
	for name, lines := range sections {
		if strings.HasPrefix(name, "frontend ") {
			frontend = append(frontend, lines...)
		}
		if strings.HasPrefix(name, "backend ") {
			backend = append(backend, lines...)
		}
	}
	for _, h := range []string{"Upgrade", "Connection"} {
		if !slices.ContainsFunc(frontend, func(l string) bool { return strings.Contains(l, "set-header "+h+" ") }) {
			problems = append(problems, "the frontend must pass the "+h+" header of a websocket upgrade")
		}
		if slices.ContainsFunc(append(frontend, backend...), func(l string) bool { return strings.Contains(l, "del-header "+h) }) {
			problems = append(problems, "the "+h+" header is deleted")
		}
	}
	if !slices.Contains(backend, "option httpchk") || !slices.Contains(backend, "http-check send meth GET uri /readyz") || !slices.Contains(backend, "http-check expect status 200") {
		problems = append(problems, "the backend must health-check GET /readyz and expect 200")
	}
	var inter time.Duration
	fall := 0
	for _, l := range backend {
		if f, ok := strings.CutPrefix(l, "default-server "); ok {
			fields := strings.Fields(f)
			for i := 0; i+1 < len(fields); i++ {
				switch fields[i] {
				case "inter":
					inter, _ = time.ParseDuration(fields[i+1])
				case "fall":
					fmt.Sscan(fields[i+1], &fall)
				}
			}
			if !slices.Contains(fields, "check") {
				problems = append(problems, "default-server must check every server")
			}
		}
	}
	if inter == 0 || fall == 0 || time.Duration(fall)*inter >= drain {
		problems = append(problems, fmt.Sprintf("a draining instance is marked down after inter × fall = %d × %s, want less than TIDEMARK_DRAIN_DELAY (%s)", fall, inter, drain))
	}
	for _, name := range instances {
		if !slices.ContainsFunc(backend, func(l string) bool { return strings.HasPrefix(l, "server ") && strings.Contains(l, " "+name+":8080") }) {
			problems = append(problems, "the backend does not send to "+name)
		}
	}
	return problems
}

// TestHAProxyChecksCatchMistakes is the control of checkHAProxy.
func TestHAProxyChecksCatchMistakes(t *testing.T) {
	good, err := os.ReadFile("compose/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	instances := []string{"tidemark-ap-southeast-2", "tidemark-eu-north-1"}
	if p := checkHAProxy(string(good), instances, defaultDrainDelay); len(p) != 0 {
		t.Fatalf("the committed haproxy.cfg has problems: %v", p)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"upgrade header not passed", `http-request set-header Upgrade`, `# `, "pass the Upgrade header"},
		{"short tunnel timeout", "timeout tunnel 1h", "timeout tunnel 30s", "timeout tunnel"},
		{"health check on /healthz", "uri /readyz", "uri /healthz", "GET /readyz"},
		{"slow health checks", "inter 1s fall 2", "inter 3s fall 3", "marked down after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(string(good), tc.from, tc.to, 1)
			if broken == string(good) {
				t.Fatalf("%q is not in haproxy.cfg", tc.from)
			}
			p := checkHAProxy(broken, instances, defaultDrainDelay)
			if !slices.ContainsFunc(p, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("no problem containing %q: %v", tc.want, p)
			}
		})
	}
	if p := checkHAProxy(string(good), append(instances, "tidemark-us-east-1"), defaultDrainDelay); len(p) == 0 {
		t.Error("an instance missing from the backend passed")
	}
}

// Dockerfile.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// parseDockerfile reads the instructions of a Dockerfile: comments and
// parser directives dropped, backslash continuations joined. (BuildKit's
// own parser would bring BuildKit's dependencies, gRPC and OpenTelemetry
// upgrades among them, into go.mod; this is enough for the checks below.)
func parseDockerfile(src string) ([]instruction, error) {
	var out []instruction
	var pending strings.Builder
	sc := bufio.NewScanner(strings.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		full := strings.TrimSpace(pending.String())
		pending.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		switch cmd {
		case "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL":
		default:
			return nil, fmt.Errorf("line %d: unknown instruction %q", n, cmd)
		}
		out = append(out, instruction{cmd, strings.TrimSpace(args)})
	}
	if pending.Len() > 0 {
		return nil, fmt.Errorf("the file ends in a continuation")
	}
	return out, nil
}

// checkDockerfile returns what is wrong with the image's recipe: a Go
// build stage, a final stage on a small base that copies only the binary
// and runs it as a non-root user.
func checkDockerfile(ins []instruction) []string {
	var problems []string
	var stages [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				return []string{"an instruction before the first FROM"}
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		return []string{"want a multi-stage build: a Go build stage and a small runtime stage"}
	}
	build := stages[0]
	if !strings.HasPrefix(build[0].args, "golang:") {
		problems = append(problems, "the first stage must build with the golang image")
	}
	if !slices.ContainsFunc(build, func(in instruction) bool {
		return in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=0") && strings.Contains(in.args, "go build") && strings.Contains(in.args, "./cmd/tidemark")
	}) {
		problems = append(problems, "the build stage must build ./cmd/tidemark statically (CGO_ENABLED=0 go build)")
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final[0].args)[0]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && !strings.HasPrefix(base, "scratch") && !strings.HasPrefix(base, "alpine") {
		problems = append(problems, "the runtime stage must use a small base, not "+base)
	}
	user := ""
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "COPY":
			if !strings.HasPrefix(in.args, "--from=") {
				problems = append(problems, "the runtime stage copies from the build context: "+in.args)
			}
		case "RUN":
			problems = append(problems, "the runtime stage runs commands (distroless has no shell): "+in.args)
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); user == "" || uid == "0" || uid == "root" {
		problems = append(problems, "the runtime stage must end as a non-root USER")
	}
	var entry instruction
	for _, in := range final {
		if in.cmd == "ENTRYPOINT" {
			entry = in
		}
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry.args), &argv); err != nil || len(argv) == 0 || !strings.HasSuffix(argv[0], "/tidemark") {
		problems = append(problems, "ENTRYPOINT must be the tidemark binary in exec form (signals reach it: the drain needs SIGTERM)")
	}
	return problems
}

func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ins, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkDockerfile(ins) {
		t.Error(p)
	}
	// The build stage copies go.mod and the source: the build context is
	// the repository's root, where they are.
	if _, err := os.Stat("../go.mod"); err != nil {
		t.Errorf("the build context ../ has no go.mod: %v", err)
	}
	if _, err := os.Stat("../cmd/tidemark"); err != nil {
		t.Error(err)
	}

	// Controls: a root user, a shell-form entrypoint, a single stage.
	for _, tc := range []struct{ from, to, want string }{
		{"USER 65532:65532", "USER root", "non-root USER"},
		{`ENTRYPOINT ["/usr/local/bin/tidemark"]`, "ENTRYPOINT /usr/local/bin/tidemark", "exec form"},
		{"FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:bookworm", "small base"},
	} {
		broken := strings.Replace(string(src), tc.from, tc.to, 1)
		if broken == string(src) {
			t.Fatalf("%q is not in the Dockerfile", tc.from)
		}
		ins, err := parseDockerfile(broken)
		if err != nil {
			t.Fatal(err)
		}
		if p := checkDockerfile(ins); !slices.ContainsFunc(p, func(p string) bool { return strings.Contains(p, tc.want) }) {
			t.Errorf("Dockerfile with %q passed: %v", tc.to, p)
		}
	}
	if _, err := parseDockerfile("FROM x\nRUNN y\n"); err == nil {
		t.Error("an unknown instruction parsed")
	}
}

// checkRegionsSetting returns what is wrong with TIDEMARK_REGIONS and
// TIDEMARK_SURVIVAL_GOAL as a migrate step reads them: they must parse as
// tidemark parses them and name every region in want.
func checkRegionsSetting(regions, goal string, want []string) []string {
	if regions == "" {
		return []string{"TIDEMARK_REGIONS is not set: migrate would leave the database single-region"}
	}
	p, err := db.ParsePlacement(regions, goal)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, r := range want {
		if !p.Has(r) {
			problems = append(problems, fmt.Sprintf("TIDEMARK_REGIONS=%q lacks region %q", regions, r))
		}
	}
	return problems
}

// TestRegionsCheckCatchesMistakes is the control of checkRegionsSetting.
func TestRegionsCheckCatchesMistakes(t *testing.T) {
	want := []string{"ap-southeast-2", "eu-north-1", "us-east-1"}
	if p := checkRegionsSetting("ap-southeast-2,eu-north-1,us-east-1", "zone", want); len(p) != 0 {
		t.Errorf("a matching list: %v", p)
	}
	for _, tc := range []struct{ regions, goal string }{
		{"", ""},
		{"ap-southeast-2,eu-north-1", ""},
		{"ap-southeast-2,eu-north-1,us-east-1", "continent"},
		{"ap-southeast-2,eu_north_1,us-east-1", ""},
	} {
		if p := checkRegionsSetting(tc.regions, tc.goal, want); len(p) == 0 {
			t.Errorf("regions %q goal %q passed", tc.regions, tc.goal)
		}
	}
}
