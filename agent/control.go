package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// listenControl opens the control socket at path with mode 0600,
// creating its directory (0700) when missing. A socket file nobody
// answers on (left by an agent that was killed) is replaced; a socket
// somebody answers on, or any other file, is left alone and is an error.
func listenControl(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create its directory: %w", err)
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("a file that is not a socket (%s) is in the way: move it, or set admin.socket to another path", fi.Mode().Type())
	default:
		c, derr := net.DialTimeout("unix", path, time.Second)
		if derr == nil {
			c.Close()
			return nil, errors.New("another process answers on it (an agent with the same admin.socket?): stop it, or set admin.socket to another path")
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("an existing socket that may be in use (%w): remove it if no agent runs, or set admin.socket to another path", unwrapOp(derr))
		}
		// Stale: nobody listens on it.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove the stale socket: %w", err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, unwrapOp(err)
	}
	// The umask decided the mode bind gave it; until this chmod, ownerOnly
	// keeps other users out.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// unwrapOp drops a net.OpError's "listen unix <path>:" prefix: the
// caller names the path already.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

// ownerOnly accepts only the connections whose peer process allow lets
// in, by the user id the kernel reports for it (SO_PEERCRED), and
// closes the others. The socket's mode already keeps other users out;
// this also covers the moment between bind and chmod, and a socket
// directory with lax permissions.
type ownerOnly struct {
	*net.UnixListener
	allow func(uid int) bool
	log   *zap.Logger
}

// Accept returns the next connection allow lets in.
func (l ownerOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && l.allow(uid) {
			return c, nil
		}
		c.Close()
		if err == nil {
			err = fmt.Errorf("refused a connection from uid %d: only uid %d and root may connect", uid, os.Geteuid())
		}
		l.log.Error(MsgAdminError, zap.Error(fmt.Errorf("control socket %s: %w", l.Addr(), err)))
	}
}

// ownUserOrRoot lets in the agent's own user and root (an operator with
// sudo, or systemd's DynamicUser whose uid nobody else has).
func ownUserOrRoot(uid int) bool { return uid == os.Geteuid() || uid == 0 }
