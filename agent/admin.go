package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Readiness says whether the agent is doing its job: the binlog is
// connected, the SCIM server answered in the last minute and the initial
// sync is over.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Readiness reports the agent's readiness.
func (a *Agent) Readiness() Readiness {
	switch {
	case !a.life.running.Load():
		return Readiness{Reason: "not running"}
	case !a.stream.Status().Connected:
		return Readiness{Reason: "binlog not connected"}
	}
	if problem := a.health.problem(); problem != "" {
		return Readiness{Reason: problem}
	}
	if !a.saved.synced.Load() {
		return Readiness{Reason: "initial sync running"}
	}
	return Readiness{Ready: true}
}

// Handler serves the HTTP admin listener (admin.listen), which may be
// open to the network for probes and scrapes:
//
//	GET  /healthz          200 while the agent's loops are turning
//	GET  /readyz           200 when ready, else 503 with {"ready":false,"reason":...}
//	GET  /metrics          Prometheus text
//	GET  /status           the Status as JSON
//
// It never serves the control endpoints, whoever asks: a peer address
// proves nothing (a sidecar proxy forwards from 127.0.0.6, kubectl
// port-forward and a browser page on the host connect from 127.0.0.1).
// Their paths answer 404 saying where they are, for an older command.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	a.observe(mux)
	for _, path := range controlPaths {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "the control endpoints (" + strings.Join(controlPaths, ", ") +
				") are served only on the agent's Unix socket (admin.socket, by default beside the state file): run the scim-agent command where the agent runs"})
		})
	}
	return mux
}

// controlPaths are the endpoints that change what the agent does.
var controlPaths = []string{"/sync", "/retry", "/approve-deletes"}

// ControlHandler serves the control socket (admin.socket): everything
// Handler serves, and
//
//	POST /sync             {"uids":[...],"dry_run":bool,"explain":bool}: reconcile now; answers the Results
//	POST /retry            {"uids":[...]} or {"parked":true}: reconcile parked uids now
//	POST /approve-deletes  release the deletion guard
//
// The socket's file mode (0600) and a check of each peer's user keep
// everyone but the agent's user and root out.
func (a *Agent) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	a.observe(mux)
	mux.HandleFunc("POST /sync", a.handleSync)
	mux.HandleFunc("POST /retry", a.handleRetry)
	mux.HandleFunc("POST /approve-deletes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"released": a.ApproveDeletes()})
	})
	return mux
}

// observe adds the read-only endpoints to mux.
func (a *Agent) observe(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		last := time.Unix(0, a.life.heartbeat.Load())
		if time.Since(last) > 10*time.Second {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stalled", "last_heartbeat": last.UTC().Format(time.RFC3339)})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := a.Readiness()
		code := http.StatusOK
		if !rd.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, rd)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// SyncRequest is the body of POST /sync and POST /retry.
type SyncRequest struct {
	UIDs  []uint32 `json:"uids"`
	Roles []string `json:"roles,omitempty"`
	// AllRoles adds every role the agent provisions or has a group of
	// (sync --all: only the agent reads its state file).
	AllRoles bool `json:"all_roles,omitempty"`
	DryRun   bool `json:"dry_run,omitempty"`
	// Parked adds every parked uid and role (retry --parked).
	Parked bool `json:"parked,omitempty"`
	// Explain asks each reconcile told step by step (sync --explain):
	// every Result carries its Explanation (a user's) or ExplainRole (a
	// role's).
	Explain bool `json:"explain,omitempty"`
}

// SyncResponse answers POST /sync and POST /retry.
type SyncResponse struct {
	Results []Result `json:"results"`
}

func (a *Agent) handleSync(w http.ResponseWriter, r *http.Request) {
	var req SyncRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	sel := Selection{UIDs: req.UIDs, Roles: req.Roles, Explain: req.Explain}
	if req.AllRoles {
		keys, err := a.roleKeys(r.Context())
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		for _, k := range keys {
			sel.Roles = append(sel.Roles, k.role)
		}
	}
	results, err := a.SyncNow(r.Context(), sel, req.DryRun)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, SyncResponse{Results: results})
}

func (a *Agent) handleRetry(w http.ResponseWriter, r *http.Request) {
	var req SyncRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	sel := Selection{UIDs: req.UIDs, Roles: req.Roles}
	if req.Parked {
		parked, err := ParkedSelection(a.store)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		sel.UIDs, sel.Roles = append(sel.UIDs, parked.UIDs...), append(sel.Roles, parked.Roles...)
	}
	results, err := a.SyncNow(r.Context(), sel, false)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, SyncResponse{Results: results})
}

// startAdmin opens the control socket and, when admin.listen is set,
// the HTTP listener, and serves both until stop is called. Run calls it
// last, so that both answer while the agent shuts down.
func (a *Agent) startAdmin(ctx context.Context) (stop func(), err error) {
	sock, err := listenControl(a.cfg.Admin.Socket)
	if err != nil {
		return nil, fmt.Errorf("admin.socket %s: %w", a.cfg.Admin.Socket, err)
	}
	type served struct {
		l net.Listener
		h http.Handler
	}
	all := []served{{ownerOnly{UnixListener: sock, allow: ownUserOrRoot, log: a.log}, a.ControlHandler()}}
	if a.cfg.Admin.Listen != "" {
		l, err := net.Listen("tcp", a.cfg.Admin.Listen)
		if err != nil {
			sock.Close()
			return nil, fmt.Errorf("admin.listen %s: %w", a.cfg.Admin.Listen, err)
		}
		a.life.adminAddr.Store(l.Addr().String())
		all = append(all, served{l, a.Handler()})
	}
	adminCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serveAdmin(adminCtx, s.l, s.h)
		}()
	}
	return func() { cancel(); wg.Wait() }, nil
}

// serveAdmin serves h on l until ctx is done; closing l removes a
// socket's file.
func (a *Agent) serveAdmin(ctx context.Context, l net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error(MsgAdminError, zap.Error(err))
	}
}
