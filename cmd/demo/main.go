// Command demo shows scim-agent at work on this machine, with nothing to
// install but Go and MariaDB: it starts a private MariaDB with the binary
// log on, loads Drupal's user tables with a handful of users and two
// roles, starts the
// in-process SCIM server the tests use, runs the real scim-agent binary
// against both, makes Drupal-style changes and prints each request as it
// arrives at the SCIM server: users, and the roles as SCIM Groups.
//
// Ctrl-C stops everything it started and removes its temp directory.
// With DEMO_UNATTENDED=1 it runs the scripted changes, checks that the
// server matches the database and exits 0 (or 1 on a mismatch).
//
// Run it with `make demo`, which builds the agent first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

func main() {
	agentBin := flag.String("agent", "bin/scim-agent", "the scim-agent binary to run")
	flag.Parse()
	unattended := os.Getenv("DEMO_UNATTENDED") == "1"
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{out: os.Stdout, agentBin: *agentBin, unattended: unattended}
	err := d.run(ctx)
	d.cleanup()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demo owns every process and directory it starts.
type demo struct {
	out        io.Writer
	agentBin   string
	unattended bool

	dir    string
	db     *testdb.Server
	site   *drupaltest.Site
	scim   *scimtest.Server
	agent  *exec.Cmd
	exited chan error // receives the agent's exit once
	admin  string

	// roles maps each role's machine name to its label, as the script
	// leaves them.
	roles map[string]string

	mu      sync.Mutex
	printed int // requests already shown
}

const token = "demo-token"

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// run sets up a Drupal database, a SCIM server and the agent, plays the
// scripted changes and checks the result, then (unless unattended) shows
// the requests further changes cause until ctx ends or the agent exits.
func (d *demo) run(ctx context.Context) error {
	if err := d.prepare(); err != nil {
		return err
	}
	db, dsn, err := d.setupDatabase(ctx)
	if err != nil {
		return err
	}
	if err := d.startSCIM(); err != nil {
		return err
	}
	config, err := d.writeConfig(dsn)
	if err != nil {
		return err
	}
	logPath := filepath.Join(d.dir, "agent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	exited, err := d.startAgent(ctx, config, logFile, logPath)
	if err != nil {
		return err
	}
	if err := d.playScript(ctx, exited); err != nil {
		return err
	}
	if d.unattended {
		return nil
	}
	return d.interact(ctx, exited, db.Name, config, logPath)
}

// prepare resolves the agent binary, checks it exists and makes the
// demo's temp directory.
func (d *demo) prepare() error {
	var err error
	if d.agentBin, err = filepath.Abs(d.agentBin); err != nil {
		return err
	}
	if _, err := os.Stat(d.agentBin); err != nil {
		return fmt.Errorf("agent binary: %w (run `make demo`, which builds it)", err)
	}
	if d.dir, err = os.MkdirTemp("", "scim-agent-demo-"); err != nil {
		return err
	}
	return nil
}

// setupDatabase starts the private MariaDB and fills a Drupal database
// with the anonymous user, two roles and five users; it returns the
// database and the DSN of the agent's account.
func (d *demo) setupDatabase(ctx context.Context) (*testdb.Database, string, error) {
	var err error
	d.say("▶ Starting a private MariaDB (binlog on, ROW format) in %s ...", d.dir)
	if d.db, err = testdb.Start(ctx, testdb.Options{}); err != nil {
		return nil, "", err
	}
	db, err := d.db.NewDatabase(ctx, "")
	if err != nil {
		return nil, "", err
	}
	d.site = &drupaltest.Site{DB: db.DB}
	dsn, err := db.CreateAgentUser(ctx)
	if err != nil {
		return nil, "", err
	}
	if err := d.site.CreateAnonymous(ctx); err != nil {
		return nil, "", err
	}
	d.roles = map[string]string{"administrator": "Administrator", "editor": "Editors"}
	for _, id := range []string{"administrator", "editor"} {
		if err := d.site.CreateRole(ctx, id, d.roles[id]); err != nil {
			return nil, "", err
		}
	}
	for _, u := range []struct {
		name, mail string
		roles      []string
	}{
		{"admin", "admin@example.org", []string{"administrator"}}, {"alice", "alice@example.org", []string{"editor"}},
		{"bob", "bob@example.org", nil}, {"carol", "carol@example.org", []string{"editor"}}, {"dave", "dave@example.org", nil},
	} {
		if _, err := d.site.Create(ctx, drupaltest.User{Name: u.name, Mail: drupaltest.Str(u.mail), Status: 1, Roles: u.roles}); err != nil {
			return nil, "", err
		}
	}
	d.say("  Drupal database %q on %s holds 5 users (uid 1-5), the anonymous user (uid 0)", db.Name, d.db.Addr)
	d.say("  and the roles administrator (admin) and editor, labelled Editors (alice, carol).")
	return db, dsn, nil
}

// startSCIM starts the SCIM server the tests use.
func (d *demo) startSCIM() error {
	var err error
	d.say("▶ Starting a SCIM 2.0 server (the one the tests use) ...")
	if d.scim, err = scimtest.Start(scimtest.Options{Token: token}); err != nil {
		return err
	}
	d.say("  %s", d.scim.URL)
	return nil
}

// writeConfig picks the admin address and writes the agent's
// config.yaml into the temp directory, returning its path.
func (d *demo) writeConfig(dsn string) (string, error) {
	var err error
	if d.admin, err = agenttest.FreeLoopbackAddr(); err != nil {
		return "", err
	}
	config := filepath.Join(d.dir, "config.yaml")
	doc := agenttest.Config{DSN: dsn, SCIMURL: d.scim.URL, StatePath: filepath.Join(d.dir, "state.db"),
		AdminListen: d.admin, LogFormat: "json", Provisioning: []string{"exclude_uids: [0]"},
		Extra: "groups:\n  enabled: true\n"}.YAML()
	if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
		return "", err
	}
	return config, nil
}

// startAgent runs the scim-agent binary on config, its output in
// logFile, waits until it is ready and shows the initial sync's
// requests. The returned channel receives the agent's exit.
func (d *demo) startAgent(ctx context.Context, config string, logFile *os.File, logPath string) (chan error, error) {
	d.say("▶ Starting scim-agent (config %s, JSON logs in %s) ...", config, logPath)
	d.agent = exec.Command(d.agentBin, "run", "--config", config)
	d.agent.Env = append(os.Environ(), "SCIM_TOKEN="+token)
	d.agent.Stdout, d.agent.Stderr = logFile, logFile
	d.agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.agent.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	d.exited = exited
	go func() { exited <- d.agent.Wait() }()
	if err := d.waitReady(ctx, exited, logPath); err != nil {
		return nil, err
	}
	d.say("  ready: the initial sync provisioned the existing users and their roles:")
	d.showRequests(true)
	return exited, nil
}

// playScript makes the scripted Drupal-style changes one by one, waits
// after each for the server to match the database and shows the requests
// it caused, then checks the server once more and shows its users.
func (d *demo) playScript(ctx context.Context, exited chan error) error {
	steps := []struct {
		title string
		do    func(context.Context) error
	}{
		{"Create user 'erin', an editor (one transaction: users, users_field_data, user__roles)", func(ctx context.Context) error {
			_, err := d.site.Create(ctx, drupaltest.User{Name: "erin", Mail: drupaltest.Str("erin@example.org"), Status: 1, Roles: []string{"editor"}})
			return err
		}},
		{"Change bob's e-mail the way Drupal saves (DELETE + INSERT of every users_field_data row)", func(ctx context.Context) error {
			return d.site.Update(ctx, 3, func(u *drupaltest.User) { u.Mail = drupaltest.Str("robert@example.org") })
		}},
		{"200 logins of alice (bare UPDATEs of login/access): nothing to send", func(ctx context.Context) error {
			for i := 0; i < 200; i++ {
				if err := d.site.Login(ctx, 2, time.Now().Unix()+int64(i)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"Rename the role editor to 'Content editors' (Drupal rewrites its config row)", func(ctx context.Context) error {
			d.roles["editor"] = "Content editors"
			return d.site.RenameRole(ctx, "editor", d.roles["editor"])
		}},
		{"Block carol (a save with status = 0; she stays an editor)", func(ctx context.Context) error {
			return d.site.Update(ctx, 4, func(u *drupaltest.User) { u.Status = 0 })
		}},
		{"Delete dave (one transaction: users, users_field_data, user__roles)", func(ctx context.Context) error {
			return d.site.Delete(ctx, 5)
		}},
	}
	for i, step := range steps {
		d.say("\n▶ %d/%d %s", i+1, len(steps), step.title)
		if err := step.do(ctx); err != nil {
			return err
		}
		if err := d.waitMatch(ctx, exited); err != nil {
			return err
		}
		d.showRequests(true)
	}
	if m := d.mismatch(ctx); m != "" {
		return fmt.Errorf("the SCIM server does not match the database: %s", m)
	}
	d.say("\n✔ The SCIM server matches the Drupal database:")
	d.showServer()
	return nil
}

// interact tells how to make changes of one's own and shows the requests
// they cause until ctx ends (nil) or the agent exits (an error).
func (d *demo) interact(ctx context.Context, exited chan error, dbName, config, logPath string) error {
	d.say("\nTry your own changes (Ctrl-C stops everything):")
	d.say("  mariadb -h 127.0.0.1 -P %s -u root %s", strings.TrimPrefix(d.db.Addr, "127.0.0.1:"), dbName)
	d.say("  e.g.  UPDATE users_field_data SET mail = 'new@example.org' WHERE uid = 2;")
	d.say("  status: %s status --config %s", d.agentBin, config)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.say("\n▶ Stopping ...")
			return nil
		case err := <-exited:
			d.exited = nil
			return fmt.Errorf("scim-agent exited: %v (see %s)", err, logPath)
		case <-tick.C:
			d.showRequests(false)
		}
	}
}

func (d *demo) waitReady(ctx context.Context, exited chan error, logPath string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + d.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			d.exited = nil
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("scim-agent exited: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("scim-agent was not ready within 60s")
}

// waitMatch waits until the server reflects the database.
func (d *demo) waitMatch(ctx context.Context, exited chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if d.mismatch(ctx) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the SCIM server did not catch up within 30s: %s", d.mismatch(ctx))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			d.exited = nil
			return fmt.Errorf("scim-agent exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mismatch describes how the server differs from the database, or "".
func (d *demo) mismatch(ctx context.Context) string {
	diffs, err := d.site.Differences(ctx, d.scim.Users(), func(uid uint32) bool { return uid != 0 })
	if err != nil {
		return err.Error()
	}
	if len(diffs) > 0 {
		return diffs[0]
	}
	return d.groupMismatch(ctx)
}

// groupMismatch describes how a role's group on the server differs from
// the role (its label, the userNames of its holders), or "".
func (d *demo) groupMismatch(ctx context.Context) string {
	for _, id := range slices.Sorted(maps.Keys(d.roles)) {
		rows, err := d.site.DB.QueryContext(ctx, `SELECT f.name FROM user__roles r
			JOIN users_field_data f ON f.uid = r.entity_id AND f.default_langcode = 1
			WHERE r.roles_target_id = ? ORDER BY f.name`, id)
		if err != nil {
			return err.Error()
		}
		var holders []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return err.Error()
			}
			holders = append(holders, name)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err.Error()
		}
		g, ok := d.group(id)
		switch {
		case !ok:
			return fmt.Sprintf("no group of role %s on the server", id)
		case g.DisplayName() != d.roles[id]:
			return fmt.Sprintf("group of role %s is named %q, not %q", id, g.DisplayName(), d.roles[id])
		case strings.Join(d.memberNames(g), ",") != strings.Join(holders, ","):
			return fmt.Sprintf("group %q has members %v, not %v", g.DisplayName(), d.memberNames(g), holders)
		}
	}
	return ""
}

// group returns the server's group of role (by externalId).
func (d *demo) group(role string) (scimtest.Group, bool) {
	for _, g := range d.scim.Groups() {
		if g.ExternalID() == role {
			return g, true
		}
	}
	return scimtest.Group{}, false
}

// memberNames returns the userNames of g's members, sorted.
func (d *demo) memberNames(g scimtest.Group) []string {
	var names []string
	for _, id := range g.Members() {
		names = append(names, d.userName(id))
	}
	sort.Strings(names)
	return names
}

// userName returns the userName of the server's account id, or the id.
func (d *demo) userName(id string) string {
	if u, ok := d.scim.UserByID(id); ok {
		return u.UserName()
	}
	return id
}

// showRequests prints the requests the SCIM server received since the
// last call, one readable line each; with sayNone it says so when there
// were none.
func (d *demo) showRequests(sayNone bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var reqs []scimtest.Request
	for _, r := range d.scim.Requests() {
		if strings.HasPrefix(r.Path, "/Users") || strings.HasPrefix(r.Path, "/Groups") {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) == d.printed {
		if sayNone {
			d.say("  (no request reached the SCIM server)")
		}
		return
	}
	for _, r := range reqs[d.printed:] {
		d.say("  ← %-6s %-45s %d  %s", r.Method, short(r.Path), r.Status, d.summary(r))
	}
	d.printed = len(reqs)
}

func short(path string) string {
	if len(path) > 45 {
		return path[:42] + "..."
	}
	return path
}

// summary says in a few words what a request asked for; members are
// shown by userName.
func (d *demo) summary(r scimtest.Request) string {
	body := r.JSON()
	switch r.Method {
	case http.MethodPost:
		if strings.HasPrefix(r.Path, "/Groups") {
			return fmt.Sprintf("create displayName=%q members=%s", body["displayName"], d.compact(body["members"]))
		}
		name, _ := body["userName"].(string)
		return fmt.Sprintf("create userName=%q active=%v", name, body["active"])
	case http.MethodPatch:
		var parts []string
		ops, _ := body["Operations"].([]any)
		for _, o := range ops {
			op, _ := o.(map[string]any)
			parts = append(parts, fmt.Sprintf("%v %v=%v", op["op"], op["path"], d.compact(op["value"])))
		}
		return strings.Join(parts, "; ")
	case http.MethodDelete:
		return "delete"
	case http.MethodGet:
		q, err := url.QueryUnescape(r.RawQuery)
		if err != nil {
			return r.RawQuery
		}
		return q
	}
	return ""
}

// compact renders a PATCH value or a members list: a list of objects as
// their values (an account's id as its userName), comma-separated.
func (d *demo) compact(v any) string {
	x, ok := v.([]any)
	if !ok {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	var values []string
	for _, e := range x {
		m, _ := e.(map[string]any)
		values = append(values, d.userName(fmt.Sprint(m["value"])))
	}
	return "[" + strings.Join(values, ",") + "]"
}

func (d *demo) showServer() {
	users := d.scim.Users()
	sort.Slice(users, func(i, j int) bool { return users[i].UserName() < users[j].UserName() })
	for _, u := range users {
		d.say("  %-8s %-22s active=%v", u.UserName(), drupaltest.Email(u), u.Get("active"))
	}
	for _, id := range slices.Sorted(maps.Keys(d.roles)) {
		if g, ok := d.group(id); ok {
			d.say("  group %-18q members %s", g.DisplayName(), strings.Join(d.memberNames(g), ", "))
		}
	}
}

// cleanup stops the agent (SIGTERM, as an operator would), the SCIM
// server and MariaDB, and removes the temp directory.
func (d *demo) cleanup() {
	if d.exited != nil {
		d.agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			d.agent.Process.Kill()
		}
	}
	if d.scim != nil {
		d.scim.Close()
	}
	if d.db != nil {
		d.db.Stop()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}
