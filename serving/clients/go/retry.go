package tfner

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// withRetries runs call with a fresh deadline per attempt, retrying after
// UNAVAILABLE only: that status means the request never reached a model
// (no server, a server starting or stopping), so sending it again is safe.
// Any other status is the server's answer, and retrying would repeat it.
func (c *NerClient) withRetries(ctx context.Context, call func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
		err := call(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable || attempt >= c.cfg.retries || ctx.Err() != nil {
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
