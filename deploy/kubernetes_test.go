package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"gopkg.in/yaml.v3"

	"github.com/scim-agent/scim-agent/internal/config"
)

// The Kubernetes types below mirror the fields the manifests use, with
// their API names. Documents are decoded strictly (KnownFields), so a
// misspelt or misplaced field (readinessprobe, a probe under the pod
// instead of the container) fails the test as it would fail
// `kubectl apply` validation; a field the API has but these types lack
// must be added here when a manifest starts using it.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type typeMeta struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type configMap struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   objectMeta        `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
}

type pvc struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		AccessModes      []string `yaml:"accessModes"`
		StorageClassName *string  `yaml:"storageClassName"`
		Resources        struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
	} `yaml:"spec"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deployment struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type          string         `yaml:"type"`
			RollingUpdate map[string]any `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		ProgressDeadlineSeconds int           `yaml:"progressDeadlineSeconds"`
		RevisionHistoryLimit    *int          `yaml:"revisionHistoryLimit"`
		Selector                labelSelector `yaml:"selector"`
		Template                struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	EnableServiceLinks            *bool `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot        *bool  `yaml:"runAsNonRoot"`
		RunAsUser           *int64 `yaml:"runAsUser"`
		RunAsGroup          *int64 `yaml:"runAsGroup"`
		FSGroup             *int64 `yaml:"fsGroup"`
		FSGroupChangePolicy string `yaml:"fsGroupChangePolicy"`
		SeccompProfile      *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []volume    `yaml:"volumes"`
}

type container struct {
	Name            string          `yaml:"name"`
	Image           string          `yaml:"image"`
	ImagePullPolicy string          `yaml:"imagePullPolicy"`
	RestartPolicy   string          `yaml:"restartPolicy"`
	Command         []string        `yaml:"command"`
	Args            []string        `yaml:"args"`
	Env             []envVar        `yaml:"env"`
	Ports           []containerPort `yaml:"ports"`
	StartupProbe    *probe          `yaml:"startupProbe"`
	LivenessProbe   *probe          `yaml:"livenessProbe"`
	ReadinessProbe  *probe          `yaml:"readinessProbe"`
	Resources       struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsGroup               *int64 `yaml:"runAsGroup"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             *struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
	} `yaml:"valueFrom"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional *bool  `yaml:"optional"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet *struct {
		Path   string `yaml:"path"`
		Port   any    `yaml:"port"`
		Scheme string `yaml:"scheme"`
	} `yaml:"httpGet"`
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	TCPSocket *struct {
		Port any `yaml:"port"`
	} `yaml:"tcpSocket"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	SuccessThreshold    int `yaml:"successThreshold"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name        string `yaml:"name"`
		DefaultMode *int   `yaml:"defaultMode"`
	} `yaml:"configMap"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"persistentVolumeClaim"`
	EmptyDir *struct {
		Medium    string `yaml:"medium"`
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
}

type service struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		Type                     string            `yaml:"type"`
		Selector                 map[string]string `yaml:"selector"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type networkPolicy struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		PodSelector labelSelector `yaml:"podSelector"`
		PolicyTypes []string      `yaml:"policyTypes"`
		Ingress     []struct {
			From []struct {
				NamespaceSelector *labelSelector `yaml:"namespaceSelector"`
				PodSelector       *labelSelector `yaml:"podSelector"`
			} `yaml:"from"`
			Ports []struct {
				Protocol string `yaml:"protocol"`
				Port     any    `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

// manifest is one file's documents by kind.
type manifest struct {
	path        string
	configMaps  map[string]configMap
	pvcs        map[string]pvc
	deployments []deployment
	services    []service
	policies    []networkPolicy
}

// apiVersions are the kinds the manifests may hold.
var apiVersions = map[string]string{
	"ConfigMap": "v1", "PersistentVolumeClaim": "v1", "Service": "v1",
	"Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1",
}

func loadManifest(t *testing.T, path string) manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := manifest{path: path, configMaps: map[string]configMap{}, pvcs: map[string]pvc{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if len(node.Content) == 0 {
			continue // an empty document (a leading ---)
		}
		var tm typeMeta
		if err := node.Decode(&tm); err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		where := fmt.Sprintf("%s: document %d (%s %s)", path, i, tm.Kind, tm.Metadata.Name)
		if tm.Kind == "Secret" {
			t.Errorf("%s: secrets are created by the operator (kubectl create secret), never shipped in a manifest", where)
			continue
		}
		want, ok := apiVersions[tm.Kind]
		if !ok {
			t.Errorf("%s: unexpected kind (add it to the test's types)", where)
			continue
		}
		if tm.APIVersion != want || tm.Metadata.Name == "" {
			t.Errorf("%s: apiVersion %q (want %s), name %q", where, tm.APIVersion, want, tm.Metadata.Name)
		}
		// Strict decode of the document into its kind's type.
		raw, err := yaml.Marshal(&node)
		if err != nil {
			t.Fatal(err)
		}
		strict := func(v any) {
			d := yaml.NewDecoder(bytes.NewReader(raw))
			d.KnownFields(true)
			if err := d.Decode(v); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
		switch tm.Kind {
		case "ConfigMap":
			var c configMap
			strict(&c)
			m.configMaps[c.Metadata.Name] = c
		case "PersistentVolumeClaim":
			var p pvc
			strict(&p)
			m.pvcs[p.Metadata.Name] = p
		case "Deployment":
			var d deployment
			strict(&d)
			m.deployments = append(m.deployments, d)
		case "Service":
			var s service
			strict(&s)
			m.services = append(m.services, s)
		case "NetworkPolicy":
			var n networkPolicy
			strict(&n)
			m.policies = append(m.policies, n)
		}
	}
	return m
}

func manifests(t *testing.T) []manifest {
	t.Helper()
	paths, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests under kubernetes/: %v", err)
	}
	var out []manifest
	for _, p := range paths {
		out = append(out, loadManifest(t, p))
	}
	return out
}

// quantityMiB reads a Kubernetes memory quantity (Mi, Gi, M, G, or
// bytes) in MiB.
func quantityMiB(q string) (float64, error) {
	for _, u := range []struct {
		suffix string
		mib    float64
	}{{"Ki", 1.0 / 1024}, {"Mi", 1}, {"Gi", 1024}, {"k", 1e3 / (1 << 20)}, {"M", 1e6 / (1 << 20)}, {"G", 1e9 / (1 << 20)}} {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			return v * u.mib, err
		}
	}
	v, err := strconv.ParseFloat(q, 64)
	return v / (1 << 20), err
}

// goMemLimitMiB reads a GOMEMLIMIT value (B, KiB, MiB, GiB, TiB
// suffixes, as the Go runtime takes them) in MiB.
func goMemLimitMiB(v string) (float64, error) {
	for _, u := range []struct {
		suffix string
		mib    float64
	}{{"KiB", 1.0 / 1024}, {"MiB", 1}, {"GiB", 1024}, {"TiB", 1 << 20}, {"B", 1.0 / (1 << 20)}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			return f * u.mib, err
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	return f / (1 << 20), err
}

// measuredPeakMiB is the agent's highest RSS measured with
// deploy/measure: 100,000 users managed, draining 100,000 pending
// changes (BenchmarkSyncScale; see the comments next to the resources in
// the manifests): the request must cover it and the limit leave room
// above it.
const measuredPeakMiB = 64.0

var secretName = regexp.MustCompile(`(?i)pass|token|secret|credential|(^|_)key($|_)`)

func isAgent(c container) bool {
	return c.Name == "scim-agent" || strings.Contains(c.Image, "scim-agent")
}

func TestKubernetesManifests(t *testing.T) {
	cfgPath := defaultConfigPath(t)
	for _, m := range manifests(t) {
		t.Run(filepath.Base(m.path), func(t *testing.T) {
			if len(m.deployments) != 1 {
				t.Fatalf("%d Deployments, want 1", len(m.deployments))
			}
			d := m.deployments[0]
			spec := d.Spec
			pod := spec.Template.Spec

			// One agent per state file: exactly one replica, and the old
			// pod gone before the new one starts.
			if spec.Replicas == nil || *spec.Replicas != 1 {
				t.Errorf("replicas %v, want exactly 1", spec.Replicas)
			}
			if spec.Strategy.Type != "Recreate" || spec.Strategy.RollingUpdate != nil {
				t.Errorf("strategy %+v, want Recreate", spec.Strategy)
			}
			for k, v := range spec.Selector.MatchLabels {
				if spec.Template.Metadata.Labels[k] != v {
					t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
				}
			}
			if len(spec.Selector.MatchLabels) == 0 {
				t.Error("no selector")
			}
			sc := pod.SecurityContext
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Error("pod securityContext.runAsNonRoot is not true")
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault" {
				t.Error("pod seccompProfile is not RuntimeDefault")
			}
			if sc.FSGroup == nil || *sc.FSGroup != 65532 {
				t.Errorf("fsGroup %v: the state volume must be writable by the image's user 65532", sc.FSGroup)
			}
			if g := pod.TerminationGracePeriodSeconds; g != nil && *g < 15 {
				t.Errorf("terminationGracePeriodSeconds %d: the agent needs up to 10s to drain", *g)
			}

			volumes := map[string]volume{}
			for _, v := range pod.Volumes {
				volumes[v.Name] = v
				switch {
				case v.ConfigMap != nil:
					if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
						t.Errorf("volume %s: no ConfigMap %s in this file", v.Name, v.ConfigMap.Name)
					}
				case v.PersistentVolumeClaim != nil:
					p, ok := m.pvcs[v.PersistentVolumeClaim.ClaimName]
					if !ok {
						t.Errorf("volume %s: no PersistentVolumeClaim %s in this file", v.Name, v.PersistentVolumeClaim.ClaimName)
					} else if !slices.Equal(p.Spec.AccessModes, []string{"ReadWriteOnce"}) || p.Spec.Resources.Requests["storage"] == "" {
						t.Errorf("PVC %s: accessModes %v, storage %q", p.Metadata.Name, p.Spec.AccessModes, p.Spec.Resources.Requests["storage"])
					}
				case v.EmptyDir != nil:
				default:
					t.Errorf("volume %s: no source", v.Name)
				}
			}

			// Every container: non-root, read-only root, no privilege, no
			// capability, memory bounded, probed, secrets from Secrets.
			all := slices.Clone(pod.Containers)
			for _, c := range pod.InitContainers {
				if c.RestartPolicy != "Always" {
					t.Errorf("init container %s: only native sidecars (restartPolicy: Always) are expected", c.Name)
				}
				all = append(all, c)
			}
			var agent *container
			for i, c := range all {
				where := "container " + c.Name
				if isAgent(c) {
					if agent != nil {
						t.Errorf("two agent containers: %s and %s", agent.Name, c.Name)
					}
					agent = &all[i]
				}
				s := c.SecurityContext
				switch {
				case s == nil:
					t.Errorf("%s: no securityContext", where)
				default:
					if (s.RunAsNonRoot == nil || !*s.RunAsNonRoot) && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
						t.Errorf("%s: runAsNonRoot is not true", where)
					}
					if s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem {
						t.Errorf("%s: readOnlyRootFilesystem is not true", where)
					}
					if s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation {
						t.Errorf("%s: allowPrivilegeEscalation is not false", where)
					}
					if s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []string{"ALL"}) || len(s.Capabilities.Add) > 0 {
						t.Errorf("%s: capabilities must drop ALL and add none", where)
					}
				}
				req, lim := c.Resources.Requests["memory"], c.Resources.Limits["memory"]
				if req == "" || lim == "" || c.Resources.Requests["cpu"] == "" {
					t.Errorf("%s: memory request and limit and a CPU request are required (%+v)", where, c.Resources)
				}
				if c.LivenessProbe == nil || c.ReadinessProbe == nil {
					t.Errorf("%s: liveness and readiness probes are required", where)
				}
				for _, e := range c.Env {
					if !secretName.MatchString(e.Name) {
						continue
					}
					if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key == "" {
						t.Errorf("%s: env %s must come from a secretKeyRef, never a value", where, e.Name)
					}
				}
				for _, vm := range c.VolumeMounts {
					if _, ok := volumes[vm.Name]; !ok {
						t.Errorf("%s: mounts an undefined volume %s", where, vm.Name)
					}
				}
			}
			if agent == nil {
				t.Fatal("no scim-agent container")
			}
			checkAgentContainer(t, m, *agent, volumes, cfgPath)
			checkServicesAndPolicies(t, m, d)
		})
	}
}

func httpProbe(t *testing.T, where string, p *probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: want an httpGet probe on %s port 9464", where, path)
		return
	}
	if p.HTTPGet.Path != path || fmt.Sprint(p.HTTPGet.Port) != "9464" {
		t.Errorf("%s: httpGet %s port %v, want %s port 9464", where, p.HTTPGet.Path, p.HTTPGet.Port, path)
	}
}

func checkAgentContainer(t *testing.T, m manifest, c container, volumes map[string]volume, cfgPath string) {
	t.Helper()
	httpProbe(t, "agent livenessProbe", c.LivenessProbe, "/healthz")
	httpProbe(t, "agent readinessProbe", c.ReadinessProbe, "/readyz")
	if c.StartupProbe != nil {
		httpProbe(t, "agent startupProbe", c.StartupProbe, "/healthz")
	}
	if !slices.ContainsFunc(c.Ports, func(p containerPort) bool { return p.ContainerPort == 9464 }) {
		t.Errorf("agent: no containerPort 9464 (%+v)", c.Ports)
	}
	if len(c.Command) > 0 {
		t.Errorf("agent: command %v overrides the image's ENTRYPOINT", c.Command)
	}
	if !slices.Equal(c.Args, []string{"run", "--config", cfgPath}) {
		t.Errorf("agent: args %v, want run --config %s", c.Args, cfgPath)
	}

	// Memory: the limit is above the measured peak, GOMEMLIMIT below the
	// limit.
	lim, err := quantityMiB(c.Resources.Limits["memory"])
	if err != nil {
		t.Errorf("agent: memory limit: %v", err)
	}
	req, err := quantityMiB(c.Resources.Requests["memory"])
	if err != nil {
		t.Errorf("agent: memory request: %v", err)
	}
	if req < measuredPeakMiB || lim < 2*measuredPeakMiB {
		t.Errorf("agent: memory request %.0fMiB / limit %.0fMiB, measured peak %.1fMiB", req, lim, measuredPeakMiB)
	}
	env := map[string]envVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if g, ok := env["GOMEMLIMIT"]; ok {
		v, err := goMemLimitMiB(g.Value)
		if err != nil || v >= lim {
			t.Errorf("agent: GOMEMLIMIT %q must be below the memory limit %.0fMiB (%v)", g.Value, lim, err)
		}
	}

	// The config: from a ConfigMap at the path the binary reads, state on
	// a PVC.
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	cfgVol, ok := volumes[mounts[filepath.Dir(cfgPath)]]
	if !ok || cfgVol.ConfigMap == nil {
		t.Fatalf("agent: no ConfigMap mounted at %s", filepath.Dir(cfgPath))
	}
	if v, ok := volumes[mounts["/var/lib/scim-agent"]]; !ok || v.PersistentVolumeClaim == nil {
		t.Errorf("agent: /var/lib/scim-agent is not a PersistentVolumeClaim")
	}
	cm := m.configMaps[cfgVol.ConfigMap.Name]
	doc, ok := cm.Data[filepath.Base(cfgPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Metadata.Name, filepath.Base(cfgPath))
	}

	// The agent accepts the config, with ${VAR}s resolved from exactly
	// the variables its container defines (fake values).
	fakeSecrets := map[string]string{}
	cfg, err := config.Parse([]byte(doc), m.path+": "+cm.Metadata.Name, func(k string) (string, bool) {
		e, ok := env[k]
		if !ok {
			return "", false
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			fakeSecrets[k] = "fake-" + strings.ToLower(k) + "-value"
			return fakeSecrets[k], true
		}
		return e.Value, true
	})
	if err != nil {
		t.Fatalf("the agent rejects the ConfigMap's config.yaml: %v", err)
	}
	// Both secrets came from the Secret through ${VAR}, none is written
	// in the ConfigMap.
	dsn, err := mysql.ParseDSN(cfg.MySQL.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if dsn.Passwd != fakeSecrets["MYSQL_PASSWORD"] || dsn.Passwd == "" {
		t.Errorf("the DSN's password is not ${MYSQL_PASSWORD} from a Secret")
	}
	if cfg.SCIM.Token != fakeSecrets["SCIM_TOKEN"] || cfg.SCIM.Token == "" {
		t.Errorf("scim.token is not ${SCIM_TOKEN} from a Secret")
	}
	host, port, err := net.SplitHostPort(cfg.Admin.Listen)
	if ip := net.ParseIP(host); err != nil || port != "9464" || (host != "" && (ip == nil || !ip.IsUnspecified())) {
		t.Errorf("admin.listen %q: the kubelet's probes need every interface on port 9464", cfg.Admin.Listen)
	}
	if !strings.HasPrefix(cfg.State.Path, "/var/lib/scim-agent/") {
		t.Errorf("state.path %s is not on the state volume", cfg.State.Path)
	}
	// `kubectl exec` runs the commands in the agent's container: they find
	// the control socket on the state volume (the root filesystem is
	// read-only).
	if !strings.HasPrefix(cfg.Admin.Socket, "/var/lib/scim-agent/") {
		t.Errorf("admin.socket %s is not on the state volume", cfg.Admin.Socket)
	}
	if cfg.Log.Format != "json" {
		t.Errorf("log.format %s: log pipelines want json", cfg.Log.Format)
	}

	// A sidecar MariaDB: the binlog the agent needs, and an initdb script
	// granting the DSN's account exactly what the agent needs, with the
	// same password.
	pod := m.deployments[0].Spec.Template.Spec
	for _, db := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if !strings.HasPrefix(db.Image, "mariadb:") {
			continue
		}
		for _, arg := range []string{"--log-bin", "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL", "--server-id=1"} {
			if !slices.Contains(db.Args, arg) {
				t.Errorf("mariadb: args %v lack %s", db.Args, arg)
			}
		}
		if dsn.Addr != "127.0.0.1:3306" {
			t.Errorf("the agent's DSN reaches %s, not the MariaDB beside it", dsn.Addr)
		}
		dbEnv := map[string]envVar{}
		for _, e := range db.Env {
			dbEnv[e.Name] = e
		}
		if dbEnv["MARIADB_DATABASE"].Value != dsn.DBName {
			t.Errorf("MARIADB_DATABASE %q, the agent reads %q", dbEnv["MARIADB_DATABASE"].Value, dsn.DBName)
		}
		var script string
		for _, vm := range db.VolumeMounts {
			if vm.MountPath != "/docker-entrypoint-initdb.d" {
				continue
			}
			v := volumes[vm.Name]
			if v.ConfigMap == nil {
				t.Fatalf("initdb volume %s is not a ConfigMap", vm.Name)
			}
			if v.ConfigMap.DefaultMode == nil || *v.ConfigMap.DefaultMode&0o111 != 0 {
				t.Errorf("initdb defaultMode %v: the entrypoint must source the script (not executable) to have docker_process_sql", v.ConfigMap.DefaultMode)
			}
			for _, s := range m.configMaps[v.ConfigMap.Name].Data {
				script += s
			}
		}
		account := fmt.Sprintf("'%s'@'127.0.0.1'", dsn.User)
		for _, want := range []string{
			"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO " + account,
			"GRANT SELECT ON \\`" + dsn.DBName + "\\`.* TO " + account,
			"CREATE USER IF NOT EXISTS " + account + " IDENTIFIED BY '${SCIM_AGENT_DB_PASSWORD}'",
		} {
			if !strings.Contains(script, want) {
				t.Errorf("initdb script lacks %q", want)
			}
		}
		if strings.Contains(strings.ToUpper(script), "ALL PRIVILEGES") {
			t.Error("initdb grants ALL PRIVILEGES: the agent needs exactly the three grants")
		}
		pw, agentPW := dbEnv["SCIM_AGENT_DB_PASSWORD"], env["MYSQL_PASSWORD"]
		if pw.ValueFrom == nil || agentPW.ValueFrom == nil || *pw.ValueFrom.SecretKeyRef != *agentPW.ValueFrom.SecretKeyRef {
			t.Error("SCIM_AGENT_DB_PASSWORD (MariaDB) and MYSQL_PASSWORD (agent) are not the same Secret key")
		}
		if db.StartupProbe == nil {
			t.Error("mariadb: a startup probe makes the agent wait for the database")
		}
	}
}

func checkServicesAndPolicies(t *testing.T, m manifest, d deployment) {
	t.Helper()
	labels := d.Spec.Template.Metadata.Labels
	selects := func(sel map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	ports := map[string]int{}
	for _, c := range append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...) {
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
	}
	for _, s := range m.services {
		if !selects(s.Spec.Selector) {
			t.Errorf("Service %s selects no pod of the Deployment", s.Metadata.Name)
		}
		for _, p := range s.Spec.Ports {
			if name, ok := p.TargetPort.(string); ok && ports[name] == 0 {
				t.Errorf("Service %s: targetPort %s names no container port", s.Metadata.Name, name)
			}
		}
		// The pod is Ready only when the agent is: a Service that other
		// applications use must not depend on the agent's readiness.
		if !s.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s: without publishNotReadyAddresses the database disappears whenever the agent is not ready", s.Metadata.Name)
		}
	}
	for _, n := range m.policies {
		if !selects(n.Spec.PodSelector.MatchLabels) {
			t.Errorf("NetworkPolicy %s selects no pod of the Deployment", n.Metadata.Name)
		}
		for _, in := range n.Spec.Ingress {
			for _, p := range in.Ports {
				if fmt.Sprint(p.Port) != "9464" {
					t.Errorf("NetworkPolicy %s opens port %v; the agent serves 9464 only", n.Metadata.Name, p.Port)
				}
			}
		}
	}
}

func TestQuantityMiB(t *testing.T) {
	for q, want := range map[string]float64{"64Mi": 64, "1Gi": 1024, "1048576": 1, "512Ki": 0.5} {
		if got, err := quantityMiB(q); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", q, got, err, want)
		}
	}
	for v, want := range map[string]float64{"200MiB": 200, "1GiB": 1024, "1048576": 1, "1048576B": 1} {
		if got, err := goMemLimitMiB(v); err != nil || got != want {
			t.Errorf("GOMEMLIMIT %s: %v %v, want %v", v, got, err, want)
		}
	}
}
