package tfner

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// withRetries runs call with a fresh deadline per attempt, retrying the
// statuses that retryable accepts, with full-jitter backoff between attempts.
func (c *NerClient) withRetries(ctx context.Context, call func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
		err := call(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		if attempt >= c.cfg.retries || !c.retryable(ctx, err) {
			return newError(err, attempt+1)
		}
		timer := time.NewTimer(c.backoff(attempt))
		select {
		case <-ctx.Done():
			timer.Stop()
			return contextError(ctx, attempt+1)
		case <-timer.C:
		}
	}
}

// retryable reports whether err means that the request never reached a
// model, so that sending it again is safe (every call of the client only
// reads). Any other status is the server's answer, and retrying would
// repeat it.
func (c *NerClient) retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		// The caller gave up, or Predict cancelled this chunk because another
		// one failed: whatever the status, nobody wants the answer any more.
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable:
		// No server answered: none, or one starting or stopping.
		return true
	case codes.Canceled:
		// A stopping server cancels the calls gRPC had accepted but not yet
		// handed to a handler: they never ran. The client's own cancellations
		// end ctx (see above) or come from Close.
		return c.conn.GetState() != connectivity.Shutdown
	}
	return false
}

// backoff is the wait before retry number attempt+1: uniform in
// [0, min(max, base * 2^attempt)), "full jitter", so that clients failed by
// the same outage do not retry in lockstep.
func (c *NerClient) backoff(attempt int) time.Duration {
	window := c.cfg.maxBackoff
	if attempt < 32 { // Beyond that, base * 2^attempt only overflows.
		window = min(window, c.cfg.baseBackoff<<attempt)
	}
	if window <= 0 {
		return 0
	}
	return rand.N(window)
}
