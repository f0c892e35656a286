package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/agenttest"
)

// socketPath is where the agent of h serves its control endpoints: the
// default admin.socket, beside the state file.
func (h *harness) socketPath() string { return h.cfg.State.Path + ".sock" }

// controlClient is an HTTP client that reaches the agent's control
// socket at path, as the scim-agent commands do.
func controlClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// call sends one request through client and returns the status and the
// decoded JSON body.
func call(t *testing.T, client *http.Client, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

// waitSocket waits until the agent answers on its control socket.
func (h *harness) waitSocket() {
	h.t.Helper()
	var err error
	if !agenttest.Poll(agenttest.Timeout, func() bool {
		var conn net.Conn
		if conn, err = net.Dial("unix", h.socketPath()); err != nil {
			return false
		}
		conn.Close()
		return true
	}) {
		h.t.Fatalf("no agent answers on %s: %v", h.socketPath(), err)
	}
}

// TestControlEndpointsAreNotOnTCP: a loopback TCP client (a sidecar
// proxy forwards from 127.0.0.6, kubectl port-forward and a browser page
// from 127.0.0.1) must not approve deletions or start reconciles; the
// agent's own socket does both.
func TestControlEndpointsAreNotOnTCP(t *testing.T) {
	h := newHarness(t, withProvisioning("max_deletes: 1\nmax_deletes_window: 10m"))
	uids := h.createMany("tcp%d", 3)
	h.start()
	h.settle()
	h.delete(uids[:2]...)
	if !agenttest.Poll(agenttest.Timeout, func() bool {
		return h.agent.guard.HeldCount() >= 1 && h.count("DELETE") >= 1 && h.agent.work.depth() == 0
	}) {
		t.Fatalf("the guard holds %d, want 1; %d DELETEs, want 1", h.agent.guard.HeldCount(), h.count("DELETE"))
	}
	gets := h.count("GET")

	for _, source := range []string{"127.0.0.6", "127.0.0.1"} {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
		tcp := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		base := "http://" + h.agent.AdminAddr()
		for _, c := range []struct{ path, body string }{
			{"/approve-deletes", ""},
			{"/sync", fmt.Sprintf(`{"uids":[%d]}`, uids[2])},
			{"/retry", `{"parked":true}`},
		} {
			code, body := call(t, tcp, "POST", base+c.path, c.body)
			msg, _ := body["error"].(string)
			if code != http.StatusNotFound || !strings.Contains(msg, "admin.socket") {
				t.Errorf("POST %s over TCP from %s: %d %v, want 404 saying the control endpoints are on admin.socket", c.path, source, code, body)
			}
		}
		// Probes, scrapes and the status stay on TCP.
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/status"} {
			resp, err := tcp.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s over TCP from %s: %d", path, source, resp.StatusCode)
			}
		}
	}
	if !h.agent.guard.Tripped() || h.count("DELETE") != 1 {
		t.Fatalf("a TCP client released the guard (%d DELETEs)", h.count("DELETE"))
	}
	if n := h.count("GET"); n != gets {
		t.Fatalf("a TCP client started a reconcile: %d GETs, was %d", n, gets)
	}

	// The socket serves the control endpoints and the status.
	sock := controlClient(h.socketPath())
	code, body := call(t, sock, "POST", "http://scim-agent/sync", fmt.Sprintf(`{"uids":[%d]}`, uids[2]))
	if code != 200 || !strings.Contains(fmt.Sprint(body["results"]), "unchanged") {
		t.Fatalf("POST /sync over the socket: %d %v", code, body)
	}
	if code, body := call(t, sock, "GET", "http://scim-agent/status", ""); code != 200 || body["running"] != true {
		t.Fatalf("GET /status over the socket: %d %v", code, body)
	}
	code, body = call(t, sock, "POST", "http://scim-agent/approve-deletes", "")
	if code != 200 || body["released"] != float64(1) {
		t.Fatalf("POST /approve-deletes over the socket: %d %v", code, body)
	}
	h.settle()
	if h.count("DELETE") != 2 || h.agent.guard.Tripped() {
		t.Fatalf("%d DELETEs after approval over the socket, want 2", h.count("DELETE"))
	}
}

// TestControlSocketIsPrivateAndRemovedAtStop: the socket is 0600 whatever
// the umask, and gone once Run returns.
func TestControlSocketIsPrivateAndRemovedAtStop(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.waitSocket()
	fi, err := os.Lstat(h.socketPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %v, want a socket with 0600", h.socketPath(), fi.Mode())
	}
	h.stop()
	if _, err := os.Lstat(h.socketPath()); !os.IsNotExist(err) {
		t.Fatalf("%s still there after the agent stopped: %v", h.socketPath(), err)
	}
}

// TestControlSocketWithTheTCPListenerOff: with admin.listen "" the socket still
// serves everything, the probes included.
func TestControlSocketWithTheTCPListenerOff(t *testing.T) {
	h := newHarness(t)
	h.cfg.Admin.Listen = ""
	h.start()
	h.waitSocket()
	h.settle()
	h.waitReady() // settled with nothing to do may precede the binlog's connection
	if h.agent.AdminAddr() != "" {
		t.Fatalf("a TCP listener on %s with admin.listen empty", h.agent.AdminAddr())
	}
	sock := controlClient(h.socketPath())
	for _, path := range []string{"/healthz", "/readyz", "/status"} {
		if code, body := call(t, sock, "GET", "http://scim-agent"+path, ""); code != 200 {
			t.Errorf("GET %s over the socket: %d %v", path, code, body)
		}
	}
}

// TestStaleControlSocketIsReplaced: a socket file left by a crashed agent
// (nobody answers on it) is replaced at start; one somebody answers on,
// or a file that is not a socket, is left alone and stops the start.
func TestStaleControlSocketIsReplaced(t *testing.T) {
	h := newHarness(t)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: h.socketPath(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // as SIGKILL leaves it: the file, with no listener
	if _, err := os.Lstat(h.socketPath()); err != nil {
		t.Fatalf("no stale socket to test with: %v", err)
	}
	h.start()
	h.waitSocket()
	h.settle()
	if code, body := call(t, controlClient(h.socketPath()), "GET", "http://scim-agent/status", ""); code != 200 || body["running"] != true {
		t.Fatalf("GET /status over the replaced socket: %d %v", code, body)
	}
	h.stop()

	// A live socket: another process answers on it.
	live, err := net.Listen("unix", h.socketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := h.runOnce(); err == nil || !strings.Contains(err.Error(), "admin.socket "+h.socketPath()) || !strings.Contains(err.Error(), "answers") {
		t.Fatalf("Run beside a live socket: %v, want an error naming admin.socket and its path", err)
	}
	if _, err := net.Dial("unix", h.socketPath()); err != nil {
		t.Fatalf("the other process's socket was taken away: %v", err)
	}
	live.Close()

	// A regular file in the way is never deleted.
	if err := os.WriteFile(h.socketPath(), []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.runOnce(); err == nil || !strings.Contains(err.Error(), "admin.socket "+h.socketPath()) || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run with a file in the way: %v, want an error naming admin.socket and its path", err)
	}
	if data, _ := os.ReadFile(h.socketPath()); string(data) != "not a socket" {
		t.Fatal("the file in the way was changed")
	}
}

// runOnce opens the agent and runs it until it either fails to start
// (its error) or is up (then it is stopped and nil returned).
func (h *harness) runOnce() error {
	h.t.Helper()
	a, err := Open(context.Background(), Options{Config: h.cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var ended bool
	var runErr error
	if !agenttest.Poll(20*time.Second, func() bool {
		if a.saved.synced.Load() {
			return true
		}
		select {
		case runErr = <-done:
			ended = true
			return true
		default:
			return false
		}
	}) {
		h.t.Fatal("the agent neither failed nor finished starting within 20s")
	}
	if ended {
		return runErr
	}
	cancel()
	if err := <-done; err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	return nil
}

// TestControlSocketRefusesOtherUsers: a peer that allow does not let in
// gets its connection closed before any request is read. (The tests run
// as one user, so allow stands in for the kernel's answer.)
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "scim-agent") // admin.socket away from the state file
	path := filepath.Join(dir, "control.sock")
	l, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the socket's missing directory %s: %v, %v; want it made with 0700", dir, fi.Mode(), err)
	}
	var asked []int
	var mu sync.Mutex
	allowed := false
	ln := ownerOnly{UnixListener: l, log: zap.NewNop(), allow: func(uid int) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, uid)
		return allowed
	}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") })}
	go srv.Serve(ln)
	defer srv.Close()

	client := controlClient(path)
	if resp, err := client.Get("http://scim-agent/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a refused peer got an answer: %d", resp.StatusCode)
	}
	mu.Lock()
	allowed = true
	mu.Unlock()
	resp, err := client.Get("http://scim-agent/")
	if err != nil {
		t.Fatalf("an allowed peer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "served" {
		t.Fatalf("an allowed peer got %q", body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) < 2 || asked[0] != os.Geteuid() {
		t.Fatalf("allow asked about uids %v, want this process's %d", asked, os.Geteuid())
	}
	if !ownUserOrRoot(os.Geteuid()) || !ownUserOrRoot(0) || ownUserOrRoot(os.Geteuid()+4242) {
		t.Fatal("ownUserOrRoot lets in the wrong users")
	}
}
