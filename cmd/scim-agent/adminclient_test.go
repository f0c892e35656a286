package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/state"
)

// TestCommandsWhateverAdminListenSays: sync, retry, approve-deletes and
// status reach a running agent through its control socket, whether its
// TCP listener is on a specific address, on a port the config does not
// name (:0), or off.
func TestCommandsWhateverAdminListenSays(t *testing.T) {
	for _, tt := range []struct{ name, listen string }{
		{"specific address", ""}, // newEnv's 127.0.0.1:<free port>
		{"port chosen at start", "127.0.0.1:0"},
		{"TCP listener off", "off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "  max_deletes: 1")
			switch tt.listen {
			case "off":
				e.admin = ""
			case "":
			default:
				e.admin = tt.listen
			}
			e.writeConfig(e.scim.URL, "  max_deletes: 1")
			first := e.create("first", "first@example.org")
			second := e.create("second", "second@example.org")
			p := e.start()
			e.waitMatch(p)

			lost, _ := e.scim.UserByUserName("first")
			e.scim.Remove(lost.ID)
			out, errOut, code := e.run("sync", "--config", e.config, "--uid", fmt.Sprint(first))
			if code != 0 || !strings.Contains(out, `created     uid=1 userName="first"`) {
				t.Fatalf("sync beside an agent with admin.listen %q: exit %d\n%s%s", e.admin, code, out, errOut)
			}
			out, errOut, code = e.run("retry", "--config", e.config, "--uid", fmt.Sprint(second))
			if code != 0 || !strings.Contains(out, `unchanged   uid=2 userName="second"`) {
				t.Fatalf("retry beside an agent with admin.listen %q: exit %d\n%s%s", e.admin, code, out, errOut)
			}

			// Two deletions with max_deletes 1: the second waits for
			// approve-deletes.
			ctx := context.Background()
			for _, uid := range []uint32{first, second} {
				if err := e.site.Delete(ctx, uid); err != nil {
					t.Fatal(err)
				}
			}
			out, errOut, code = e.waitStatus("TRIPPED")
			if code != 0 || !strings.Contains(out, "agent                running since") || !strings.Contains(out, "deletion guard       TRIPPED") {
				t.Fatalf("status beside an agent with admin.listen %q: exit %d\n%s%s", e.admin, code, out, errOut)
			}
			out, errOut, code = e.run("approve-deletes", "--config", e.config)
			if code != 0 || !strings.Contains(out, "approved: 1 held") {
				t.Fatalf("approve-deletes beside an agent with admin.listen %q: exit %d\n%s%s", e.admin, code, out, errOut)
			}
			e.waitMatch(p)
		})
	}
}

// TestCommandsNameTheSocketWhenNoAgentAnswers: a process holds the state
// file but answers on no socket (an agent still starting, or a stuck
// one): the error says where the command looked.
func TestCommandsNameTheSocketWhenNoAgentAnswers(t *testing.T) {
	e := newEnv(t, "")
	uid := e.create("held", "")
	store, err := state.Open(e.statePath, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	socket := e.statePath + ".sock"
	for _, args := range [][]string{
		{"status"}, {"approve-deletes"}, {"sync", "--uid", fmt.Sprint(uid)}, {"retry", "--parked"},
	} {
		out, errOut, code := e.run(append(args, "--config", e.config)...)
		if code != 1 || !strings.Contains(errOut, socket) || !strings.Contains(errOut, "admin.socket") {
			t.Errorf("%s while another process holds the state file: exit %d, want 1 and the socket %s named\n%s%s", args[0], code, socket, out, errOut)
		}
	}
}

// TestMissingStateDirectory: state.path under a directory that does not
// exist yet. run and sync create it (0700, as systemd's StateDirectory
// and the image would); status and approve-deletes, which must not create
// state, fail naming the missing file and create nothing.
func TestMissingStateDirectory(t *testing.T) {
	e := newEnv(t, "")
	dir := filepath.Join(e.dir, "var", "lib", "scim-agent")
	e.statePath = filepath.Join(dir, "state.db")
	e.writeConfig(e.scim.URL, "")
	uid := e.create("alice", "alice@example.org")

	for _, cmd := range []string{"status", "approve-deletes"} {
		out, errOut, code := e.run(cmd, "--config", e.config)
		if code != 1 || !strings.Contains(errOut, "no state file at "+e.statePath) {
			t.Errorf("%s under a missing directory: exit %d\n%s%s", cmd, code, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "var")); !os.IsNotExist(err) {
		t.Fatalf("status or approve-deletes created a directory: %v", err)
	}

	out, errOut, code := e.run("sync", "--config", e.config, "--uid", fmt.Sprint(uid))
	if code != 0 || !strings.Contains(out, `created     uid=1 userName="alice"`) {
		t.Fatalf("sync under a missing directory: exit %d\n%s%s", code, out, errOut)
	}
	assertPrivateDir(t, dir)

	// The agent, pointed at another missing directory.
	dir = filepath.Join(e.dir, "run", "scim-agent")
	e.statePath = filepath.Join(dir, "state.db")
	e.writeConfig(e.scim.URL, "")
	p := e.start()
	e.waitReady(p)
	assertPrivateDir(t, dir)
	fi, err := os.Lstat(e.statePath + ".sock")
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket beside the state file: %v, %v", fi.Mode(), err)
	}
}

func assertPrivateDir(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v, %v; want a directory with mode 0700", dir, fi.Mode(), err)
	}
}

// TestTooLongSocketPathIsAConfigError: every command refuses a state.path
// whose socket path a Unix socket cannot have, naming admin.socket.
func TestTooLongSocketPathIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	// A state file path whose socket path (+ ".sock") is 108 bytes.
	long := filepath.Join(dir, strings.Repeat("x", 108-len(dir)-len("//state.db.sock")), "state.db")
	doc := "mysql:\n  dsn: agent:pw@tcp(127.0.0.1:1)/d\nscim:\n  base_url: https://idp.example.com/scim/v2\n  token: t\nstate:\n  path: " + long + "\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"run"}, {"status"}, {"sync", "--all"}} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append(args, "--config", path), &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), "admin.socket: "+long+".sock (state.path + .sock) is") {
			t.Errorf("%s: exit %d, stderr %q", args[0], code, errOut.String())
		}
	}
}
