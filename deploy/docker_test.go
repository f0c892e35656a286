package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/config"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// parseDockerfile splits a Dockerfile into instructions and reports its
// parser directives (# syntax=...). No Docker engine runs here, so the
// tests check the file's structure instead of building it.
func parseDockerfile(t *testing.T, p string) (directives map[string]string, ins []instruction) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	directives = map[string]string{}
	sc := bufio.NewScanner(f)
	n, inDirectives := 0, true
	var cur *instruction
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if inDirectives {
			if m := regexp.MustCompile(`^#\s*(syntax|escape|check)\s*=\s*(\S+)\s*$`).FindStringSubmatch(trimmed); m != nil {
				directives[m[1]] = m[2]
				continue
			}
			inDirectives = false
		}
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == nil) {
			continue
		}
		if cur == nil {
			cmd, args, _ := strings.Cut(trimmed, " ")
			cur = &instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: n}
		} else {
			cur.args += " " + trimmed
		}
		if strings.HasSuffix(cur.args, `\`) {
			cur.args = strings.TrimSpace(strings.TrimSuffix(cur.args, `\`))
			continue
		}
		ins = append(ins, *cur)
		cur = nil
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s: the last instruction ends with a line continuation", p)
	}
	return directives, ins
}

// stage is one FROM ... of a multi-stage build.
type stage struct {
	from, name string
	ins        []instruction
}

func stages(ins []instruction, args map[string]string) []stage {
	var out []stage
	for _, in := range ins {
		if in.cmd == "ARG" && len(out) == 0 {
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
			continue
		}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: os.Expand(f[0], func(k string) string { return args[k] })}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			out = append(out, s)
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].ins = append(out[len(out)-1].ins, in)
		}
	}
	return out
}

func find(s stage, cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// defaultConfigPath is where the binary looks for its config by default.
func defaultConfigPath(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "scim-agent", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`defaultConfig\s*=\s*"([^"]+)"`).FindSubmatch(src)
	if m == nil {
		t.Fatal("cmd/scim-agent/main.go: no defaultConfig constant")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	directives, ins := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	// RUN --mount needs BuildKit's Dockerfile frontend.
	if !strings.HasPrefix(directives["syntax"], "docker/dockerfile:1") {
		t.Errorf("# syntax=docker/dockerfile:1 missing (RUN --mount needs it); directives %v", directives)
	}
	args := map[string]string{}
	st := stages(ins, args)
	if len(st) != 2 {
		t.Fatalf("%d stages, want 2 (build, runtime)", len(st))
	}
	build, final := st[0], st[1]

	// The build stage's Go is the one go.mod asks for.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	if want := "golang:" + string(goLine[1]); build.from != want || build.name != "build" {
		t.Errorf("build stage FROM %s AS %s, want %s AS build", build.from, build.name, want)
	}
	var buildCmd string
	for _, r := range find(build, "RUN") {
		if strings.Contains(r.args, "go build") {
			buildCmd = r.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", `-ldflags="-s -w"`, "-buildvcs=${BUILDVCS}", "./cmd/scim-agent", "-o /out/scim-agent"} {
		if !strings.Contains(buildCmd, want) {
			t.Errorf("the go build RUN lacks %s: %q", want, buildCmd)
		}
	}
	var buildvcs string
	for _, a := range find(build, "ARG") {
		if k, v, _ := strings.Cut(a.args, "="); k == "BUILDVCS" {
			buildvcs = v
		}
	}
	if buildvcs != "true" {
		t.Errorf("ARG BUILDVCS=%q, want true: `scim-agent version` must report the commit", buildvcs)
	}
	copies := find(build, "COPY")
	if len(copies) == 0 || !strings.Contains(copies[len(copies)-1].args, ". .") {
		t.Errorf("the build stage does not copy the context: %v", copies)
	}

	// The runtime stage.
	if final.from != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.from)
	}
	cfgPath := defaultConfigPath(t)
	var copied []string
	for _, c := range find(final, "COPY") {
		f := strings.Fields(c.args)
		src, dst := f[len(f)-2], f[len(f)-1]
		copied = append(copied, dst)
		if !slices.ContainsFunc(f, func(s string) bool { return strings.HasPrefix(s, "--from=") }) {
			if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
			if src == "deploy/docker/config.yaml" && dst != cfgPath {
				t.Errorf("the image's config goes to %s; the binary reads %s", dst, cfgPath)
			}
		}
	}
	for _, want := range []string{"/usr/local/bin/scim-agent", cfgPath, "/var/lib/scim-agent"} {
		if !slices.Contains(copied, want) {
			t.Errorf("the runtime stage does not COPY %s (copies %v)", want, copied)
		}
	}
	one := func(cmd string) string {
		got := find(final, cmd)
		if len(got) != 1 {
			t.Errorf("runtime stage: %d %s instructions, want 1", len(got), cmd)
			return ""
		}
		return got[0].args
	}
	if u := one("USER"); u != "65532:65532" && u != "nonroot" && u != "65532" {
		t.Errorf("USER %s, want the nonroot user 65532", u)
	}
	if w := one("WORKDIR"); w != "/var/lib/scim-agent" {
		t.Errorf("WORKDIR %s", w)
	}
	if v := one("VOLUME"); v != `["/var/lib/scim-agent"]` && v != "/var/lib/scim-agent" {
		t.Errorf("VOLUME %s", v)
	}
	if e := one("EXPOSE"); e != "9464" && e != "9464/tcp" {
		t.Errorf("EXPOSE %s", e)
	}
	var entry, cmd []string
	if err := json.Unmarshal([]byte(one("ENTRYPOINT")), &entry); err != nil {
		t.Errorf("ENTRYPOINT is not in exec (JSON) form: %v", err)
	}
	if err := json.Unmarshal([]byte(one("CMD")), &cmd); err != nil {
		t.Errorf("CMD is not in exec (JSON) form: %v", err)
	}
	if !slices.Equal(entry, []string{"/usr/local/bin/scim-agent"}) {
		t.Errorf("ENTRYPOINT %v", entry)
	}
	if !slices.Equal(cmd, []string{"run", "--config", cfgPath}) {
		t.Errorf("CMD %v, want run --config %s", cmd, cfgPath)
	}
}

// TestDockerConfig checks the config baked into the image: the agent
// accepts it with the three documented variables set, it listens where
// probes reach it and keeps state on the volume.
func TestDockerConfig(t *testing.T) {
	data, err := os.ReadFile("docker/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"MYSQL_DSN":     "scim_agent:pw@tcp(db:3306)/drupal",
		"SCIM_BASE_URL": "https://idp.example.com/scim/v2",
		"SCIM_TOKEN":    "token",
	}
	var asked []string
	cfg, err := config.Parse(data, "docker/config.yaml", func(k string) (string, bool) {
		asked = append(asked, k)
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"MYSQL_DSN", "SCIM_BASE_URL", "SCIM_TOKEN"}) {
		t.Errorf("the image's config reads %v", asked)
	}
	for k := range env {
		if !strings.Contains(string(data), "#   "+k) {
			t.Errorf("docker/config.yaml's header does not document %s", k)
		}
	}
	if cfg.Admin.Listen != "0.0.0.0:9464" {
		t.Errorf("admin.listen %q: probes from outside the container need 0.0.0.0:9464", cfg.Admin.Listen)
	}
	if !strings.HasPrefix(cfg.State.Path, "/var/lib/scim-agent/") {
		t.Errorf("state.path %s is not on the image's volume", cfg.State.Path)
	}
	// `docker exec <c> scim-agent ...` finds the control socket there.
	if !strings.HasPrefix(cfg.Admin.Socket, "/var/lib/scim-agent/") {
		t.Errorf("admin.socket %s is not on the image's volume, the one writable place", cfg.Admin.Socket)
	}
	if cfg.SCIM.Token != "token" || cfg.MySQL.DSN != env["MYSQL_DSN"] {
		t.Errorf("secrets not taken from the environment: %+v", cfg.MySQL)
	}
}

// dockerignoreMatch reports whether a .dockerignore pattern excludes
// file (slash-separated, relative to the context): Docker's rules, i.e.
// path.Match per segment, ** for any number of segments, anchored at the
// context's root, and a pattern that matches a directory excludes
// everything under it.
func dockerignoreMatch(pattern, file string) bool {
	pattern = strings.Trim(path.Clean("/"+pattern), "/")
	ps := strings.Split(pattern, "/")
	fs := strings.Split(file, "/")
	var match func(ps, fs []string) bool
	match = func(ps, fs []string) bool {
		if len(ps) == 0 {
			return len(fs) == 0
		}
		if ps[0] == "**" {
			for i := 0; i <= len(fs); i++ {
				if match(ps[1:], fs[i:]) {
					return true
				}
			}
			return false
		}
		if len(fs) == 0 {
			return false
		}
		ok, _ := path.Match(ps[0], fs[0])
		return ok && match(ps[1:], fs[1:])
	}
	for i := 1; i <= len(fs); i++ {
		if match(ps, fs[:i]) {
			return true
		}
	}
	return false
}

func TestDockerignoreMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, file string
		want          bool
	}{
		{"bin/", "bin/scim-agent", true},
		{"bin/", "cmd/bin/x", false},
		{"**/*.db", "state.db", true},
		{"**/*.db", "a/b/state.db", true},
		{"*.db", "a/state.db", false},
		{"scim-agent", "scim-agent", true},
		{"scim-agent", "cmd/scim-agent/main.go", false},
		{"tmp/", "tmp/x/y", true},
	} {
		if got := dockerignoreMatch(c.pattern, c.file); got != c.want {
			t.Errorf("%q vs %q: %v, want %v", c.pattern, c.file, got, c.want)
		}
	}
}

// TestDockerignore checks the VCS decision: .git stays in the context
// (-buildvcs=true needs it) and no tracked file is left out, since a
// tracked file missing from the context looks deleted to `git status`
// and would stamp every image "+dirty".
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "!") {
				t.Errorf(".dockerignore: exception %q: keep the file a plain list of untracked paths", l)
			}
			patterns = append(patterns, l)
		}
	}
	for _, want := range []string{"bin/", "**/*.db"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	for _, p := range patterns {
		for _, f := range []string{".git", ".git/HEAD", "go.mod", "go.sum", "deploy/docker/config.yaml", "cmd/scim-agent/main.go"} {
			if dockerignoreMatch(p, f) {
				t.Errorf(".dockerignore %q excludes %s, which the build needs", p, f)
			}
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed: tracked files not checked")
	}
	cmd := exec.Command("git", "ls-files")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a Git checkout?)", err)
	}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		for _, p := range patterns {
			if dockerignoreMatch(p, f) {
				t.Errorf(".dockerignore %q excludes the tracked file %s: every image would report +dirty", p, f)
			}
		}
	}
}

// TestDockerBuildCommandStampsVersion runs the Dockerfile's own build
// command (read from it) in a fresh clone of the repository, as the
// build stage runs it in the context, and checks what `scim-agent
// version` then reports: a module version from Git (a tag, or a
// pseudo-version) and the commit, not "(devel)". No Docker engine is
// needed for that part of the image.
func TestDockerBuildCommandStampsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	head, err := exec.Command("git", "-C", repoRoot, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a Git checkout: %v", err)
	}
	_, ins := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	var run string
	for _, in := range ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			run = in.args
		}
	}
	// Drop RUN's own flags (--mount=...): the rest is the shell command.
	for strings.HasPrefix(run, "--") {
		_, run, _ = strings.Cut(run, " ")
		run = strings.TrimSpace(run)
	}
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if b, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", repoRoot, src).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, b)
	}
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(run, "/out/", out+"/"))
	cmd.Dir = src
	// BUILDVCS as the Dockerfile's ARG sets it. The explicit flag wins
	// over a -buildvcs=false in the developer's GOFLAGS.
	cmd.Env = append(os.Environ(), "BUILDVCS=true")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the Dockerfile's build command: %v\n%s", err, b)
	}
	version, err := exec.Command(filepath.Join(out, "scim-agent"), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(version), "\n")
	if !regexp.MustCompile(`^scim-agent v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(lines[0]) {
		t.Errorf("version line %q: want a tag or a pseudo-version from Git", lines[0])
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "revision   "+strings.TrimSpace(string(head))+" (") {
		t.Errorf("no clean revision line for %s:\n%s", head, version)
	}
	t.Logf("a Docker build of this commit reports:\n%s", version)
}
