package deploy_test

// This test parses every deployment file (compose/compose.yaml, each
// document of k8s/*.yaml, the Dockerfile) and cross-checks them against the
// acu code and against each other: the ACU_* variables and command-line
// flags they use are the ones the commands define, the addresses in those
// variables name services that exist (compose) or are documented
// (Kubernetes), ports agree with ACU_HTTP, every long-running service is
// probed (readiness /readyz, liveness /healthz), scaled by an autoscaler and given resources. It needs
// no network and no Docker.
//
// The flags come from the code, not from a list kept here: the shared
// settings from config.Config.Register, and each command's full flag set
// from the command itself (acu <command> -h lists it, connecting nowhere).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gocql/gocql"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/acu-patrol/acu/internal/cli"
	"github.com/acu-patrol/acu/internal/config"
)

const (
	composePath    = "compose/compose.yaml"
	k8sDir         = "k8s"
	readmePath     = "README.md"
	dockerfilePath = "Dockerfile"

	// The ConfigMap and Secret every acu container reads with envFrom.
	configMapName = "acu-config"
	secretName    = "acu-secrets"
)

// acuServices are the acu commands the deployment runs, under the same name
// in compose (service) and Kubernetes (Deployment, or Job for setup), with
// the settings naming what each connects to (internal/cli: the needTemporal,
// needEtcd and needStore of startService; runSetup; the worker's follow-ups
// read the archiver's progress in Kafka).
var acuServices = []struct {
	cmd, name   string
	longRunning bool // serves /healthz, has a Deployment and an HPA
	uses        []string
}{
	{"ingest", "acu-ingest", true, []string{"ACU_KAFKA", "ACU_ETCD", "ACU_TEMPORAL", "ACU_STORE"}},
	{"archive", "acu-archive", true, []string{"ACU_KAFKA", "ACU_STORE"}},
	{"worker", "acu-worker", true, []string{"ACU_KAFKA", "ACU_TEMPORAL", "ACU_ETCD", "ACU_STORE", "ACU_PATROL_URL"}},
	{"setup", "acu-setup", false, []string{"ACU_KAFKA", "ACU_TEMPORAL", "ACU_STORE"}},
}

// requiredEnv is what every acu Deployment sets, directly or via envFrom.
var requiredEnv = []string{"ACU_KAFKA", "ACU_ETCD", "ACU_TEMPORAL", "ACU_STORE", "ACU_HTTP"}

// partitionBound are the consumer-group services: replicas beyond the
// partition count of piscine.results sit idle.
var partitionBound = []string{"acu-ingest", "acu-archive"}

// ---- the flags, from the code

// sharedEnv is the variable of every shared setting (config.Config.Register):
// what any acu command reads, so what a ConfigMap for all of them may hold.
func sharedEnv() map[string]bool {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	new(config.Config).Register(fs)
	env := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { env[config.EnvName(f.Name)] = true })
	return env
}

var usageLine = regexp.MustCompile(`^  -(\S+)(?: (\S+))?(?:\t.*)?$`)

// commandFlags returns a command's flags, name to kind (bool, int,
// duration, float or string), as the command prints them for -h: the shared
// settings plus its own (setup's --partitions, --replication-factor, the
// analytics schedule flags...).
func commandFlags(t *testing.T, cmd string) map[string]string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{cmd, "-h"}, cli.Env{
		Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" },
	})
	if code != 0 {
		t.Fatalf("acu %s -h: exit %d: %s", cmd, code, stderr.String())
	}
	flags := map[string]string{}
	for _, line := range strings.Split(stderr.String(), "\n") {
		m := usageLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch m[2] {
		case "":
			flags[m[1]] = "bool"
		case "int", "uint", "int64", "uint64":
			flags[m[1]] = "int"
		case "duration", "float":
			flags[m[1]] = m[2]
		default:
			flags[m[1]] = "string"
		}
	}
	if len(flags) == 0 {
		t.Fatalf("acu %s -h listed no flags:\n%s", cmd, stderr.String())
	}
	return flags
}

// commandEnv is the set of variables a command reads.
func commandEnv(t *testing.T, cmd string) map[string]bool {
	env := map[string]bool{}
	for name := range commandFlags(t, cmd) {
		env[config.EnvName(name)] = true
	}
	return env
}

// parseArgs checks a container's arguments as acu would parse them (a known
// command, known flags, values of the right type, nothing left over) and
// returns the parsed flags.
func parseArgs(t *testing.T, where string, args []string) *flag.FlagSet {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no acu command in the arguments", where)
		return flag.NewFlagSet("none", flag.ContinueOnError)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for name, kind := range commandFlags(t, args[0]) {
		switch kind {
		case "bool":
			fs.Bool(name, false, "")
		case "int":
			fs.Int(name, 0, "")
		case "duration":
			fs.Duration(name, 0, "")
		case "float":
			fs.Float64(name, 0, "")
		default:
			fs.String(name, "", "")
		}
	}
	if err := fs.Parse(args[1:]); err != nil {
		t.Errorf("%s: acu %s: %v", where, strings.Join(args, " "), err)
	} else if fs.NArg() > 0 {
		t.Errorf("%s: acu %s: unexpected arguments %q", where, strings.Join(args, " "), fs.Args())
	}
	return fs
}

func flagInt(t *testing.T, where string, fs *flag.FlagSet, name string) int {
	t.Helper()
	f := fs.Lookup(name)
	if f == nil {
		t.Fatalf("%s: acu %s has no --%s", where, fs.Name(), name)
	}
	n, err := strconv.Atoi(f.Value.String())
	if err != nil {
		t.Fatalf("%s: --%s=%q: %v", where, name, f.Value.String(), err)
	}
	return n
}

// checkEnvNames reports the ACU_* variables of env that cmd does not read.
func checkEnvNames(t *testing.T, where, cmd string, env map[string]string) {
	t.Helper()
	known := commandEnv(t, cmd)
	for _, name := range sortedKeys(env) {
		if strings.HasPrefix(name, "ACU_") && !known[name] {
			t.Errorf("%s: %s is not a setting of acu %s (README, Configuration)", where, name, cmd)
		}
	}
}

// checkSettings applies env as acu does (config.Parse: typed values) and
// checks the values with config.Validate; a cassandra:// store must also
// name the three nodes, QUORUM and a replication factor of 3.
func checkSettings(t *testing.T, where string, env map[string]string) {
	t.Helper()
	fs := flag.NewFlagSet(where, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c config.Config
	c.Register(fs)
	if err := config.Parse(fs, nil, func(k string) string { return env[k] }); err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	for _, err := range unjoin(c.Validate()) {
		t.Errorf("%s: %v", where, err)
	}
	if c.IsCassandra() {
		checkStoreURL(t, where, c)
	}
}

// checkStoreURL checks the production Cassandra store value: the three
// nodes as contact points, keyspace acu, QUORUM, replication factor 3.
func checkStoreURL(t *testing.T, where string, c config.Config) {
	t.Helper()
	cc, err := c.Cassandra()
	if err != nil {
		t.Errorf("%s: ACU_STORE=%q: %v", where, c.Store, err)
		return
	}
	if len(cc.Hosts) < 3 {
		t.Errorf("%s: ACU_STORE=%q: want the three Cassandra nodes as contact points", where, c.Store)
	}
	if cc.Keyspace != "acu" {
		t.Errorf("%s: ACU_STORE=%q: keyspace %q, want acu", where, c.Store, cc.Keyspace)
	}
	if cc.Consistency != gocql.Quorum {
		t.Errorf("%s: ACU_STORE=%q: consistency %v, want QUORUM", where, c.Store, cc.Consistency)
	}
	if r := cc.Replication; !cc.ReplicationSet || r.Strategy != "SimpleStrategy" || r.Factor != 3 {
		t.Errorf("%s: ACU_STORE=%q: want replication=SimpleStrategy:3 (one node can be lost)", where, c.Store)
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ---- addresses

type hostPort struct{ host, port string }

// addressVars are the variables whose values name other services, in the
// acu containers and in the infrastructure's.
var addressVars = []string{
	"ACU_KAFKA", "ACU_ETCD", "ACU_TEMPORAL", "ACU_STORE", "ACU_PATROL_URL",
	"TEMPORAL_ADDRESS", "POSTGRES_SEEDS", "SQL_HOST", "CASSANDRA_SEEDS",
}

// addresses returns the hosts (and ports, "" when implicit) a setting's
// value names: comma-separated host[:port] or URLs, the Cassandra store's
// contact points; none for a sqlite: store.
func addresses(name, value string) ([]hostPort, error) {
	if name == "ACU_STORE" {
		if strings.HasPrefix(value, "sqlite:") {
			return nil, nil
		}
		u, err := url.Parse(value)
		if err != nil {
			return nil, err
		}
		if u.Scheme != "cassandra" {
			return nil, fmt.Errorf("%s=%q: want sqlite:<path> or cassandra://hosts/keyspace", name, value)
		}
		value = u.Host
	}
	var out []hostPort
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if strings.Contains(item, "://") {
			u, err := url.Parse(item)
			if err != nil {
				return nil, fmt.Errorf("%s=%q: %w", name, value, err)
			}
			item = u.Host
		}
		if item == "" {
			return nil, fmt.Errorf("%s=%q: empty address", name, value)
		}
		hp := hostPort{host: item}
		if strings.Contains(item, ":") {
			h, p, err := net.SplitHostPort(item)
			if err != nil {
				return nil, fmt.Errorf("%s=%q: %w", name, value, err)
			}
			hp = hostPort{h, p}
		}
		out = append(out, hp)
	}
	return out, nil
}

// httpPort is the port of an ACU_HTTP value.
func httpPort(t *testing.T, where, value string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(value)
	if err != nil {
		t.Fatalf("%s: ACU_HTTP=%q: %v", where, value, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: ACU_HTTP=%q: %v", where, value, err)
	}
	return port
}

// ---- YAML

// yamlDocs parses every document of a YAML stream (multi-document files
// are split at ---), rejecting duplicate keys; empty documents are skipped.
func yamlDocs(t *testing.T, path string) []any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for i := 1; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// decodeStrict decodes a parsed YAML value into v through JSON (the form
// the Kubernetes types and our compose subset are declared in), rejecting
// fields v does not have: a misspelt field fails here.
func decodeStrict(doc any, v any) error {
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// ---- compose

type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Configs  map[string]struct {
		Content string `json:"content"`
		File    string `json:"file"`
	} `json:"configs"`
	Volumes map[string]any `json:"volumes"`
}

// composeService is the subset of the Compose specification this file
// uses; a field outside it fails the test (add it here if it is right).
type composeService struct {
	Image       string            `json:"image"`
	Build       *composeBuild     `json:"build"`
	Entrypoint  []string          `json:"entrypoint"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	Expose      []string          `json:"expose"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval"`
		Timeout     string   `json:"timeout"`
		StartPeriod string   `json:"start_period"`
		Retries     int      `json:"retries"`
	} `json:"healthcheck"`
	Volumes []string `json:"volumes"`
	Configs []struct {
		Source string `json:"source"`
		Target string `json:"target"`
	} `json:"configs"`
	Restart         string            `json:"restart"`
	StopGracePeriod string            `json:"stop_grace_period"`
	Labels          map[string]string `json:"labels"`
	Deploy          *struct {
		Resources struct {
			Limits       map[string]string `json:"limits"`
			Reservations map[string]string `json:"reservations"`
		} `json:"resources"`
	} `json:"deploy"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

// containerPorts are the ports a service listens on: expose, and the
// container side of ports.
func (s composeService) containerPorts() map[string]bool {
	ports := map[string]bool{}
	for _, p := range s.Expose {
		ports[p] = true
	}
	for _, p := range s.Ports {
		p = strings.TrimSuffix(strings.TrimSuffix(p, "/tcp"), "/udp")
		ports[p[strings.LastIndex(p, ":")+1:]] = true
	}
	return ports
}

var interpolation = regexp.MustCompile(`\$(\$|\{([^}]*)\}|[A-Za-z_][A-Za-z0-9_]*)`)
var interpolationDefault = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*):?-(.*)$`)

// interpolate resolves a value as docker compose would with an empty
// environment: $$ is $, ${NAME:-default} and ${NAME-default} are the
// default. A variable without a default is an error: the file must work
// without an .env file.
func interpolate(s string) (string, error) {
	var errs []error
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if strings.HasPrefix(m, "${") {
			if d := interpolationDefault.FindStringSubmatch(m[2 : len(m)-1]); d != nil {
				return d[2]
			}
		}
		errs = append(errs, fmt.Errorf("%s: no default (write ${NAME:-default})", m))
		return m
	})
	return out, errors.Join(errs...)
}

// interpolateAll interpolates every string of a parsed YAML tree.
func interpolateAll(v any) (any, error) {
	switch v := v.(type) {
	case string:
		return interpolate(v)
	case map[string]any:
		var errs []error
		for k, e := range v {
			var err error
			v[k], err = interpolateAll(e)
			errs = append(errs, err)
		}
		return v, errors.Join(errs...)
	case []any:
		var errs []error
		for i, e := range v {
			var err error
			v[i], err = interpolateAll(e)
			errs = append(errs, err)
		}
		return v, errors.Join(errs...)
	}
	return v, nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	docs := yamlDocs(t, composePath)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", composePath, len(docs))
	}
	doc, err := interpolateAll(docs[0])
	if err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a mapping", composePath)
	}
	for k := range top { // extension fields (x-...) hold the anchors
		if strings.HasPrefix(k, "x-") {
			delete(top, k)
		}
	}
	var f composeFile
	if err := decodeStrict(top, &f); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	if len(f.Services) == 0 {
		t.Fatalf("%s: no services", composePath)
	}
	return f
}

func TestCompose(t *testing.T) {
	f := loadCompose(t)

	t.Run("infrastructure", func(t *testing.T) {
		for _, tc := range []struct{ service, image string }{
			{"kafka-1", "apache/kafka:4."},
			{"kafka-2", "apache/kafka:4."},
			{"kafka-3", "apache/kafka:4."},
			{"cassandra-1", "cassandra:5.0"},
			{"cassandra-2", "cassandra:5.0"},
			{"cassandra-3", "cassandra:5.0"},
			{"etcd-1", "/etcd:v3."},
			{"etcd-2", "/etcd:v3."},
			{"etcd-3", "/etcd:v3."},
			{"temporal", "temporalio/server:"},
			{"temporal-ui", "temporalio/ui:"},
		} {
			s, ok := f.Services[tc.service]
			if !ok {
				t.Errorf("no service %s", tc.service)
				continue
			}
			if !strings.Contains(s.Image, tc.image) {
				t.Errorf("%s: image %q, want %s…", tc.service, s.Image, tc.image)
			}
		}
	})

	// The Kafka cluster the nemesis runs (internal/chaos): three KRaft
	// voters, each a broker; every replicated log, the consumer offsets
	// included, on all three with two in sync, so that one broker can be
	// lost without losing a write or the services' progress.
	t.Run("kafka as tested", func(t *testing.T) {
		var voters []string
		for _, name := range sortedKeys(f.Services) {
			s := f.Services[name]
			if !strings.HasPrefix(s.Image, "apache/kafka:") {
				continue
			}
			voters = append(voters, s.Environment["KAFKA_NODE_ID"]+"@"+name+":9093")
			for k, want := range map[string]string{
				"KAFKA_PROCESS_ROLES":                            "broker,controller",
				"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "3",
				"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
				"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "2",
				"KAFKA_MIN_INSYNC_REPLICAS":                      "2",
				"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
			} {
				if got := s.Environment[k]; got != want {
					t.Errorf("%s: %s=%q, want %q", name, k, got, want)
				}
			}
			if adv := s.Environment["KAFKA_ADVERTISED_LISTENERS"]; !strings.Contains(adv, "PLAINTEXT://"+name+":9092") {
				t.Errorf("%s: KAFKA_ADVERTISED_LISTENERS=%q does not advertise %s:9092", name, adv, name)
			}
		}
		if len(voters) != 3 {
			t.Fatalf("%d Kafka brokers, want 3", len(voters))
		}
		for _, name := range sortedKeys(f.Services) {
			s := f.Services[name]
			if !strings.HasPrefix(s.Image, "apache/kafka:") {
				continue
			}
			got := strings.Split(s.Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"], ",")
			slices.Sort(got)
			if want := slices.Sorted(slices.Values(voters)); !slices.Equal(got, want) {
				t.Errorf("%s: voters %v, want %v", name, got, want)
			}
		}
		brokers := strings.Split(f.Services["acu-ingest"].Environment["ACU_KAFKA"], ",")
		if len(brokers) != len(voters) {
			t.Errorf("ACU_KAFKA=%v: want every broker as a seed", brokers)
		}
	})

	t.Run("images are pinned", func(t *testing.T) {
		for _, name := range sortedKeys(f.Services) {
			img := f.Services[name].Image
			if i := strings.LastIndex(img, ":"); i < 0 || strings.Contains(img[i:], "/") || img[i+1:] == "latest" {
				t.Errorf("%s: image %q has no pinned tag", name, img)
			}
		}
	})

	t.Run("references", func(t *testing.T) {
		for _, name := range sortedKeys(f.Services) {
			s := f.Services[name]
			for _, dep := range sortedKeys(s.DependsOn) {
				target, ok := f.Services[dep]
				switch cond := s.DependsOn[dep].Condition; {
				case !ok:
					t.Errorf("%s depends on %s: no such service", name, dep)
				case cond == "service_healthy" && target.Healthcheck == nil:
					t.Errorf("%s waits for %s to be healthy: it has no healthcheck", name, dep)
				case cond == "service_completed_successfully" && target.Restart != "" && target.Restart != "no":
					t.Errorf("%s waits for %s to complete: it restarts (%s)", name, dep, target.Restart)
				case cond != "service_healthy" && cond != "service_started" && cond != "service_completed_successfully":
					t.Errorf("%s depends on %s: condition %q", name, dep, cond)
				}
			}
			for _, c := range s.Configs {
				if _, ok := f.Configs[c.Source]; !ok {
					t.Errorf("%s: config %s is not defined", name, c.Source)
				}
			}
			for _, v := range s.Volumes {
				src, _, _ := strings.Cut(v, ":")
				if src == "" || strings.ContainsAny(src[:1], "./~$") {
					continue // a bind mount
				}
				if _, ok := f.Volumes[src]; !ok {
					t.Errorf("%s: volume %s is not defined", name, src)
				}
			}
			// Every address in the environment names a service of this
			// file, on a port that service listens on.
			for _, v := range addressVars {
				value, ok := s.Environment[v]
				if !ok {
					continue
				}
				addrs, err := addresses(v, value)
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				for _, a := range addrs {
					target, ok := f.Services[a.host]
					if !ok {
						t.Errorf("%s: %s=%q names %s: no such service", name, v, value, a.host)
						continue
					}
					if a.port != "" && !target.containerPorts()[a.port] {
						t.Errorf("%s: %s=%q: %s does not expose port %s", name, v, value, a.host, a.port)
					}
				}
			}
		}
	})

	// One image for every acu service, built from deploy/Dockerfile.
	acuImage := f.Services["acu-setup"].Image
	acuBuild := f.Services["acu-setup"].Build
	kafkaBrokers := 0
	for _, s := range f.Services {
		if strings.HasPrefix(s.Image, "apache/kafka:") {
			kafkaBrokers++
		}
	}

	for _, svc := range acuServices {
		t.Run(svc.name, func(t *testing.T) {
			s, ok := f.Services[svc.name]
			if !ok {
				t.Fatalf("no service %s", svc.name)
			}
			if s.Image != acuImage || s.Build == nil || acuBuild == nil || *s.Build != *acuBuild {
				t.Errorf("image %q build %+v; want the image of every acu service, %q built by %+v", s.Image, s.Build, acuImage, acuBuild)
			}
			if s.Build != nil {
				dir := filepath.Join(filepath.Dir(composePath), s.Build.Context)
				if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
					t.Errorf("build context %s: %v", s.Build.Context, err)
				}
				if p := filepath.Join(dir, s.Build.Dockerfile); p != filepath.Clean(dockerfilePath) &&
					!strings.HasSuffix(filepath.ToSlash(p), "deploy/"+dockerfilePath) {
					t.Errorf("build dockerfile %s, want deploy/Dockerfile", p)
				}
			}
			if len(s.Command) == 0 || s.Command[0] != svc.cmd {
				t.Errorf("command %q, want acu %s", s.Command, svc.cmd)
			}
			fs := parseArgs(t, svc.name, s.Command)
			checkEnvNames(t, svc.name, svc.cmd, s.Environment)
			checkSettings(t, svc.name, s.Environment)
			for _, v := range append(slices.Clone(requiredEnv), svc.uses...) {
				if s.Environment[v] == "" {
					t.Errorf("%s is not set", v)
				}
			}

			// It starts after what it connects to.
			for _, v := range svc.uses {
				addrs, _ := addresses(v, s.Environment[v])
				for _, a := range addrs {
					dep, ok := s.DependsOn[a.host]
					want := "service_started"
					if target := f.Services[a.host]; target.Healthcheck != nil {
						want = "service_healthy"
					}
					if !ok || dep.Condition != want {
						t.Errorf("%s=%s: depends_on %s is %q, want %s", v, s.Environment[v], a.host, dep.Condition, want)
					}
				}
			}

			if svc.cmd == "setup" {
				if rf := flagInt(t, svc.name, fs, "replication-factor"); rf != 3 || rf > kafkaBrokers {
					t.Errorf("--replication-factor %d with %d Kafka broker(s), want 3 (what the nemesis runs)", rf, kafkaBrokers)
				}
				if s.Restart != "" && s.Restart != "no" {
					t.Errorf("restart %q: setup runs once", s.Restart)
				}
				return
			}
			if dep := s.DependsOn["acu-setup"]; dep.Condition != "service_completed_successfully" {
				t.Errorf("depends_on acu-setup %q, want service_completed_successfully", dep.Condition)
			}
			port := strconv.Itoa(httpPort(t, svc.name, s.Environment["ACU_HTTP"]))
			if !s.containerPorts()[port] {
				t.Errorf("ports %q: ACU_HTTP's port %s is not published", s.Ports, port)
			}
			if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[1] != "/usr/local/bin/healthcheck" {
				t.Errorf("healthcheck %+v, want the image's /usr/local/bin/healthcheck (GET /readyz on ACU_HTTP)", s.Healthcheck)
			}
			checkScrape(t, svc.name, s.Labels, port)
			if s.Restart == "" || s.Restart == "no" {
				t.Errorf("restart %q: a service must come back", s.Restart)
			}
		})
	}

	t.Run("temporal namespace", func(t *testing.T) {
		ns := f.Services["acu-setup"].Environment["ACU_NAMESPACE"]
		cmd := strings.Join(f.Services["temporal-namespace"].Command, " ")
		if ns == "" || !strings.Contains(cmd, "namespace create --namespace "+ns+" ") {
			t.Errorf("temporal-namespace does not create ACU_NAMESPACE %q: %s", ns, cmd)
		}
	})
}

// checkScrape checks the Prometheus scrape annotations (Kubernetes) or
// labels (compose).
func checkScrape(t *testing.T, where string, m map[string]string, port string) {
	t.Helper()
	want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": "/metrics"}
	for _, k := range sortedKeys(want) {
		if m[k] != want[k] {
			t.Errorf("%s: %s=%q, want %q", where, k, m[k], want[k])
		}
	}
}

// ---- Kubernetes

type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Namespace  string           `json:"namespace"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
	Digest  string `json:"digest"`
}

type manifests struct {
	kustomization *kustomization
	namespaces    map[string]*corev1.Namespace
	configMaps    map[string]*corev1.ConfigMap
	secrets       map[string]*corev1.Secret
	deployments   map[string]*appsv1.Deployment
	hpas          map[string]*autoscalingv2.HorizontalPodAutoscaler
	jobs          map[string]*batchv1.Job
	files         []string // the manifest files, kustomization.yaml aside
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	m := &manifests{
		namespaces: map[string]*corev1.Namespace{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, deployments: map[string]*appsv1.Deployment{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, jobs: map[string]*batchv1.Job{},
	}
	for _, file := range files {
		if filepath.Base(file) != "kustomization.yaml" {
			m.files = append(m.files, filepath.Base(file))
		}
		for i, doc := range yamlDocs(t, file) {
			where := fmt.Sprintf("%s, document %d", file, i+1)
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			data, _ := json.Marshal(doc)
			if err := json.Unmarshal(data, &head); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			var seen bool
			gvk := head.APIVersion + " " + head.Kind
			switch name := head.Metadata.Name; gvk {
			case "kustomize.config.k8s.io/v1beta1 Kustomization":
				seen, m.kustomization = m.kustomization != nil, &kustomization{}
				obj = m.kustomization
			case "v1 Namespace":
				obj, seen = add(m.namespaces, name)
			case "v1 ConfigMap":
				obj, seen = add(m.configMaps, name)
			case "v1 Secret":
				obj, seen = add(m.secrets, name)
			case "apps/v1 Deployment":
				obj, seen = add(m.deployments, name)
			case "autoscaling/v2 HorizontalPodAutoscaler":
				obj, seen = add(m.hpas, name)
			case "batch/v1 Job":
				obj, seen = add(m.jobs, name)
			default:
				t.Fatalf("%s: unexpected %s (add it to this test)", where, gvk)
			}
			if seen {
				t.Errorf("%s: a second %s %q", where, head.Kind, head.Metadata.Name)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s (%s %s): %v", where, head.Kind, head.Metadata.Name, err)
			}
			if head.Kind != "Kustomization" && head.Metadata.Name == "" {
				t.Errorf("%s: %s without a name", where, head.Kind)
			}
		}
	}
	if m.kustomization == nil {
		t.Fatalf("no %s/kustomization.yaml", k8sDir)
	}
	return m
}

// add allocates the object named name in objs; seen reports a duplicate.
func add[T any](objs map[string]*T, name string) (obj *T, seen bool) {
	_, seen = objs[name]
	obj = new(T)
	objs[name] = obj
	return obj, seen
}

// containerEnv is a container's environment as the kubelet builds it:
// envFrom sources in order, then env (later wins). Missing sources are
// reported.
func (m *manifests) containerEnv(t *testing.T, where string, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, src := range c.EnvFrom {
		switch {
		case src.ConfigMapRef != nil:
			cm, ok := m.configMaps[src.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %s: not in the manifests", where, src.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[src.Prefix+k] = v
			}
		case src.SecretRef != nil:
			s, ok := m.secrets[src.SecretRef.Name]
			if !ok {
				t.Errorf("%s: envFrom Secret %s: not in the manifests", where, src.SecretRef.Name)
				continue
			}
			for k, v := range s.Data {
				env[src.Prefix+k] = string(v)
			}
			for k, v := range s.StringData {
				env[src.Prefix+k] = v
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			env[e.Name] = "" // not known here; present
			continue
		}
		env[e.Name] = e.Value
	}
	return env
}

func TestKubernetes(t *testing.T) {
	m := loadManifests(t)
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("kustomization", func(t *testing.T) {
		k := m.kustomization
		res := slices.Sorted(slices.Values(k.Resources))
		if !slices.Equal(res, m.files) {
			t.Errorf("kustomization.yaml resources %q, want every manifest %q", res, m.files)
		}
		if k.Namespace == "" || m.namespaces[k.Namespace] == nil {
			t.Errorf("kustomization namespace %q: no such Namespace in the manifests", k.Namespace)
		}
		if !slices.ContainsFunc(k.Images, func(i kustomizeImage) bool {
			return i.Name == "acu" && i.NewName != "" && (i.NewTag != "" || i.Digest != "")
		}) {
			t.Errorf("kustomization images %+v: want the acu image mapped to a registry", k.Images)
		}
	})

	t.Run("config", func(t *testing.T) {
		shared := sharedEnv()
		cm, ok := m.configMaps[configMapName]
		if !ok {
			t.Fatalf("no ConfigMap %s", configMapName)
		}
		sec, ok := m.secrets[secretName]
		if !ok {
			t.Fatalf("no Secret %s", secretName)
		}
		secretKeys := map[string]bool{}
		for k := range sec.Data {
			secretKeys[k] = true
		}
		for k := range sec.StringData {
			secretKeys[k] = true
		}
		// What every acu container reads must be a setting of every acu
		// command: the shared settings.
		for _, k := range sortedKeys(cm.Data) {
			if !shared[k] {
				t.Errorf("ConfigMap %s: %s is not an acu setting (README, Configuration)", configMapName, k)
			}
			if secretKeys[k] {
				t.Errorf("%s is both in ConfigMap %s and Secret %s", k, configMapName, secretName)
			}
		}
		for _, k := range sortedKeys(secretKeys) {
			if !shared[k] {
				t.Errorf("Secret %s: %s is not an acu setting", secretName, k)
			}
		}
		// The infrastructure is outside these manifests: its Services must
		// be the ones deploy/README.md documents.
		for _, v := range []string{"ACU_KAFKA", "ACU_ETCD", "ACU_TEMPORAL", "ACU_STORE"} {
			addrs, err := addresses(v, cm.Data[v])
			if err != nil || len(addrs) == 0 {
				t.Errorf("ConfigMap %s: %s=%q: %v", configMapName, v, cm.Data[v], err)
			}
			for _, a := range addrs {
				// The whole name: temporal-front is not temporal-frontend.
				documented := regexp.MustCompile(`(^|[^A-Za-z0-9_.-])` + regexp.QuoteMeta(a.host) + `($|[^A-Za-z0-9_-])`)
				if !documented.Match(readme) {
					t.Errorf("%s=%q names %s, which %s does not document", v, cm.Data[v], a.host, readmePath)
				}
			}
		}
	})

	// Every acu container runs the one image, named acu here and mapped to
	// its registry by the kustomization.
	checkImage := func(t *testing.T, where string, c corev1.Container) {
		t.Helper()
		if c.Image != "acu" {
			t.Errorf("%s: image %q, want acu (the kustomization maps it to the registry) like every acu container", where, c.Image)
		}
	}

	var partitions int
	t.Run("setup job", func(t *testing.T) {
		job, ok := m.jobs["acu-setup"]
		if !ok {
			t.Fatal("no Job acu-setup")
		}
		spec := job.Spec.Template.Spec
		if len(spec.Containers) != 1 {
			t.Fatalf("%d containers, want 1", len(spec.Containers))
		}
		c := spec.Containers[0]
		checkImage(t, "Job acu-setup", c)
		if len(c.Command) > 0 {
			t.Errorf("command %q overrides the image's entrypoint (acu)", c.Command)
		}
		if len(c.Args) == 0 || c.Args[0] != "setup" {
			t.Fatalf("args %q, want acu setup", c.Args)
		}
		fs := parseArgs(t, "Job acu-setup", c.Args)
		partitions = flagInt(t, "Job acu-setup", fs, "partitions")
		if rf := flagInt(t, "Job acu-setup", fs, "replication-factor"); rf != 3 {
			t.Errorf("--replication-factor %d, want 3", rf)
		}
		env := m.containerEnv(t, "Job acu-setup", c)
		checkEnvNames(t, "Job acu-setup", "setup", env)
		checkSettings(t, "Job acu-setup", env)
		if p := spec.RestartPolicy; p != corev1.RestartPolicyOnFailure && p != corev1.RestartPolicyNever {
			t.Errorf("restartPolicy %q", p)
		}
		if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit < 1 {
			t.Errorf("backoffLimit %v: setup is retried while the servers come up", job.Spec.BackoffLimit)
		}
		checkResources(t, "Job acu-setup", c)
	})

	for _, svc := range acuServices {
		if !svc.longRunning {
			continue
		}
		t.Run(svc.name, func(t *testing.T) {
			d, ok := m.deployments[svc.name]
			if !ok {
				t.Fatalf("no Deployment %s", svc.name)
			}
			where := "Deployment " + svc.name
			if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
				t.Errorf("%s: no selector", where)
			} else {
				for k, v := range d.Spec.Selector.MatchLabels {
					if d.Spec.Template.Labels[k] != v {
						t.Errorf("%s: selector %s=%s does not match the pod labels", where, k, v)
					}
				}
			}
			if d.Spec.Replicas != nil {
				t.Errorf("%s: replicas %d: the HPA owns the count (kubectl apply would reset it)", where, *d.Spec.Replicas)
			}
			spec := d.Spec.Template.Spec
			if len(spec.Containers) != 1 {
				t.Fatalf("%s: %d containers, want 1", where, len(spec.Containers))
			}
			c := spec.Containers[0]
			checkImage(t, where, c)
			if len(c.Command) > 0 {
				t.Errorf("%s: command %q overrides the image's entrypoint (acu)", where, c.Command)
			}
			if !slices.Equal(c.Args, []string{svc.cmd}) {
				t.Errorf("%s: args %q, want [%s]", where, c.Args, svc.cmd)
			}
			parseArgs(t, where, c.Args)

			env := m.containerEnv(t, where, c)
			checkEnvNames(t, where, svc.cmd, env)
			checkSettings(t, where, env)
			for _, v := range append(slices.Clone(requiredEnv), svc.uses...) {
				if env[v] == "" {
					t.Errorf("%s: %s is not set (env or envFrom)", where, v)
				}
			}

			// Ports: the container port, the probes and the scrape
			// annotation are ACU_HTTP's.
			port := httpPort(t, where, env["ACU_HTTP"])
			portNames := map[string]int32{}
			declared := false
			for _, p := range c.Ports {
				portNames[p.Name] = p.ContainerPort
				declared = declared || int(p.ContainerPort) == port
			}
			if !declared {
				t.Errorf("%s: container ports %+v do not include ACU_HTTP's %d", where, c.Ports, port)
			}
			for _, probe := range []struct {
				name, path string
				p          *corev1.Probe
			}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
				if probe.p == nil || probe.p.HTTPGet == nil {
					t.Errorf("%s: no HTTP %s", where, probe.name)
					continue
				}
				g := probe.p.HTTPGet
				got := int(g.Port.IntVal)
				if g.Port.Type == intstr.String {
					got = int(portNames[g.Port.StrVal])
				}
				if g.Path != probe.path || got != port {
					t.Errorf("%s: %s GET %s on port %s (= %d), want %s on %d", where, probe.name, g.Path, g.Port.String(), got, probe.path, port)
				}
			}
			checkScrape(t, where, d.Spec.Template.Annotations, strconv.Itoa(port))
			checkResources(t, where, c)

			// An autoscaler targets it by name.
			var hpa *autoscalingv2.HorizontalPodAutoscaler
			for _, h := range m.hpas {
				if r := h.Spec.ScaleTargetRef; r.Kind == "Deployment" && r.Name == svc.name {
					if r.APIVersion != "apps/v1" {
						t.Errorf("HPA %s: scaleTargetRef apiVersion %q", h.Name, r.APIVersion)
					}
					hpa = h
				}
			}
			if hpa == nil {
				t.Fatalf("no HorizontalPodAutoscaler targets Deployment %s", svc.name)
			}
			if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 1 || *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas {
				t.Errorf("HPA %s: minReplicas %v, maxReplicas %d", hpa.Name, hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
			}
			if !slices.ContainsFunc(hpa.Spec.Metrics, func(ms autoscalingv2.MetricSpec) bool {
				return ms.Type == autoscalingv2.ResourceMetricSourceType && ms.Resource != nil && ms.Resource.Name == corev1.ResourceCPU
			}) {
				t.Errorf("HPA %s: no CPU metric", hpa.Name)
			}
			if slices.Contains(partitionBound, svc.name) && partitions > 0 && int(hpa.Spec.MaxReplicas) != partitions {
				t.Errorf("HPA %s: maxReplicas %d, want the partitions of acu setup (%d): more replicas sit idle", hpa.Name, hpa.Spec.MaxReplicas, partitions)
			}
		})
	}

	t.Run("nothing else", func(t *testing.T) {
		known := map[string]bool{}
		for _, svc := range acuServices {
			known[svc.name] = true
		}
		for name := range m.deployments {
			if !known[name] {
				t.Errorf("Deployment %s is not checked by this test", name)
			}
		}
		for name, h := range m.hpas {
			if m.deployments[h.Spec.ScaleTargetRef.Name] == nil {
				t.Errorf("HPA %s targets %s %s: not in the manifests", name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
			}
		}
	})
}

func checkResources(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.Sign() <= 0 {
			t.Errorf("%s: no %s request", where, r)
		}
	}
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	if lim.Sign() <= 0 || lim.Cmp(req) < 0 {
		t.Errorf("%s: memory limit %s, request %s", where, lim.String(), req.String())
	}
}

// ---- every ACU_* name anywhere in deploy/

// TestVariableNames checks every ACU_* name written in the deployment files
// and the README, comments included: each must be a setting of a command
// the deployment runs.
func TestVariableNames(t *testing.T) {
	known := map[string]bool{}
	for _, svc := range acuServices {
		for k := range commandEnv(t, svc.cmd) {
			known[k] = true
		}
	}
	files := []string{composePath, readmePath, dockerfilePath}
	k8s, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	files = append(files, k8s...)
	name := regexp.MustCompile(`\bACU_[A-Z0-9_]*[A-Z0-9]`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range name.FindAllString(string(data), -1) {
			if !known[n] {
				t.Errorf("%s: %s is not an acu setting (README, Configuration)", f, n)
			}
		}
	}
}

// ---- Dockerfile and README

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, "FROM ") {
			from = append(from, l)
		}
	}
	text := strings.Join(lines, "\n")
	if len(from) != 2 || !strings.HasPrefix(from[0], "FROM golang:") || !strings.Contains(from[1], "distroless/static") {
		t.Errorf("stages %q: want a golang builder and a distroless/static runtime", from)
	}
	for _, want := range []string{
		"go build -trimpath -ldflags=\"-s -w\" -o /out/acu ./cmd/acu",
		"-o /out/healthcheck ./deploy/healthcheck",
		"CGO_ENABLED=0",
		`ENTRYPOINT ["/usr/local/bin/acu"]`,
		`HEALTHCHECK`, `CMD ["/usr/local/bin/healthcheck"]`,
		"ENV ACU_HTTP=0.0.0.0:8080",
		"EXPOSE 8080",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile: no %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join("healthcheck", "main.go")); err != nil {
		t.Error(err)
	}
}

func TestReadme(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, want := range []string{
		"docker compose -f deploy/compose/compose.yaml up",
		"kubectl apply -k deploy/k8s",
		"docker build -f deploy/Dockerfile",
		"## Scaling each service",
		"consistency=quorum&replication=SimpleStrategy:3",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("%s: no %q", readmePath, want)
		}
	}
	_, scaling, _ := strings.Cut(readme, "## Scaling each service")
	scaling, _, _ = strings.Cut(scaling, "\n## ")
	var headings []string
	for _, l := range strings.Split(scaling, "\n") {
		if h, ok := strings.CutPrefix(l, "### "); ok {
			headings = append(headings, h)
		}
	}
	for _, topic := range []string{"acu ingest", "acu archive", "acu worker", "Kafka partitions", "Cassandra nodes", "etcd members", "Temporal"} {
		if !slices.ContainsFunc(headings, func(h string) bool { return strings.Contains(h, topic) }) {
			t.Errorf("%s: Scaling each service has no section on %s (sections %q)", readmePath, topic, headings)
		}
	}
	// Every compose service is described.
	f := loadCompose(t)
	for _, name := range sortedKeys(f.Services) {
		if !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("%s: compose service %s is not described", readmePath, name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
