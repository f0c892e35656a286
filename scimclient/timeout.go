package scimclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// attemptTimeout bounds each attempt, from connecting to the answer's
// last byte, by a deadline on the attempt's context. It does what
// http.Client.Timeout does, without what that costs here: behind a
// RoundTripper other than *http.Transport (authTransport is one),
// Client.Timeout starts a goroutine, a timer and two channels for every
// request, one more goroutine switch per request on the agent's one
// thread.
type attemptTimeout struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (t attemptTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, t.explain(ctx, err)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, attempt: ctx, cancel: cancel, limit: t}
	return resp, nil
}

// CloseIdleConnections passes the call on to the transport below.
func (t attemptTimeout) CloseIdleConnections() { closeIdle(t.base) }

// closeIdle closes rt's idle connections if it keeps any: what
// http.Client.CloseIdleConnections does, for the transports wrapped
// around an *http.Transport here, which it would otherwise not reach.
func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// explain says that an attempt's error came from its deadline, as
// Client.Timeout's errors do, so that a log line does not read as the
// agent giving up; the error still matches context.DeadlineExceeded.
// (When the caller's own context ends first, the call reports that
// instead: see callError.)
func (t attemptTimeout) explain(attempt context.Context, err error) error {
	if errors.Is(attempt.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no complete answer within the timeout of %s: %w", t.timeout, err)
	}
	return err
}

// cancelOnClose ends an attempt's context when its body is closed: the
// deadline runs on while the body is read.
type cancelOnClose struct {
	io.ReadCloser
	attempt context.Context
	cancel  context.CancelFunc
	limit   attemptTimeout
}

func (b *cancelOnClose) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.limit.explain(b.attempt, err)
	}
	return n, err
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
