package scimclient

import (
	"context"
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
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends an attempt's context when its body is closed: the
// deadline runs on while the body is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
