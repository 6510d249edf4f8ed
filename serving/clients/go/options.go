package tfner

import (
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// Defaults of a NerClient; each has an Option.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultRetries     = 3
	DefaultBaseBackoff = 100 * time.Millisecond
	DefaultMaxBackoff  = 2 * time.Second
	// DefaultChunkSize matches the Python client and serving/batching.config's
	// max_batch_size: one call fills one batch at most.
	DefaultChunkSize = 16
	// DefaultConcurrency bounds the chunks of one Predict call in flight at
	// once, so that one large input does not monopolize the server's batcher.
	DefaultConcurrency = 4
)

// Load-balancing policies for WithLoadBalancing.
const (
	// PickFirst sends every call over one connection to the first address
	// that answers: gRPC's default.
	PickFirst = "pick_first"
	// RoundRobin connects to every address the target's DNS name resolves to
	// and spreads calls over them, e.g. the pods behind a Kubernetes headless
	// Service. A long-lived connection through a ClusterIP Service would
	// otherwise pin all traffic to one pod.
	RoundRobin = "round_robin"
)

// An Option configures a NerClient; pass options to NewNerClient.
type Option func(*config)

type config struct {
	version       int64
	hasVersion    bool
	label         string
	timeout       time.Duration
	retries       int
	baseBackoff   time.Duration
	maxBackoff    time.Duration
	chunkSize     int
	concurrency   int
	tls           *tls.Config
	loadBalancing string
	dialOptions   []grpc.DialOption
}

func defaultConfig() config {
	return config{
		timeout:       DefaultTimeout,
		retries:       DefaultRetries,
		baseBackoff:   DefaultBaseBackoff,
		maxBackoff:    DefaultMaxBackoff,
		chunkSize:     DefaultChunkSize,
		concurrency:   DefaultConcurrency,
		loadBalancing: PickFirst,
	}
}

// WithVersion pins calls to one model version; the default is the server's
// choice (the highest available). Exclusive with WithLabel.
func WithVersion(version int64) Option {
	return func(c *config) { c.version, c.hasVersion = version, true }
}

// WithLabel pins calls to a version label, e.g. "stable" or "canary".
// Exclusive with WithVersion.
func WithLabel(label string) Option {
	return func(c *config) { c.label = label }
}

// WithTimeout sets the deadline of each call (each attempt of each chunk).
// Default 10 s.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithRetries sets how many times a call is retried after UNAVAILABLE (a
// server starting, restarting or between pods), or after a CANCELLED that
// the client did not cause (a stopping server cancels the calls it had not
// started). No other status is retried. Default 3.
func WithRetries(n int) Option {
	return func(c *config) { c.retries = n }
}

// WithBackoff sets the retry backoff: retry k waits a random time in
// [0, min(max, base * 2^k)) ("full jitter", which spreads the retries of
// many clients). The same bounds pace gRPC's reconnection attempts, so a
// restarted server is found again within max. Default 100 ms and 2 s.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) { c.baseBackoff, c.maxBackoff = base, max }
}

// WithChunkSize sets the most texts per call; Predict splits larger inputs.
// Keep it at or below the server's --max_texts_per_request. Default 16.
func WithChunkSize(n int) Option {
	return func(c *config) { c.chunkSize = n }
}

// WithConcurrency sets how many chunks of one Predict call run at once.
// Default 4.
func WithConcurrency(n int) Option {
	return func(c *config) { c.concurrency = n }
}

// WithTLS makes the client connect over TLS; a nil config uses the system's
// root certificates. The default is plaintext.
func WithTLS(tlsConfig *tls.Config) Option {
	return func(c *config) {
		if tlsConfig == nil {
			tlsConfig = &tls.Config{}
		}
		c.tls = tlsConfig
	}
}

// WithLoadBalancing sets gRPC's load-balancing policy: PickFirst (default)
// or RoundRobin. With RoundRobin a target without a scheme is resolved as
// "dns:///host:port" and re-resolved as pods come and go.
func WithLoadBalancing(policy string) Option {
	return func(c *config) { c.loadBalancing = policy }
}

// WithDialOptions appends gRPC dial options (interceptors, credentials,
// keepalive...) after the client's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

func (c *config) validate() error {
	switch {
	case c.hasVersion && c.label != "":
		return fmt.Errorf("tfner: WithVersion(%d) and WithLabel(%q) both given; pin one or the other", c.version, c.label)
	case c.hasVersion && c.version < 0:
		// 0 is a version: TF Serving serves any folder named by an integer.
		return fmt.Errorf("tfner: WithVersion(%d): versions are non-negative integers", c.version)
	case c.timeout <= 0:
		return fmt.Errorf("tfner: WithTimeout(%v): the deadline must be positive", c.timeout)
	case c.retries < 0:
		return fmt.Errorf("tfner: WithRetries(%d): must be >= 0", c.retries)
	case c.baseBackoff <= 0 || c.maxBackoff < c.baseBackoff:
		return fmt.Errorf("tfner: WithBackoff(%v, %v): need 0 < base <= max", c.baseBackoff, c.maxBackoff)
	case c.chunkSize < 1:
		return fmt.Errorf("tfner: WithChunkSize(%d): must be >= 1", c.chunkSize)
	case c.concurrency < 1:
		return fmt.Errorf("tfner: WithConcurrency(%d): must be >= 1", c.concurrency)
	case c.loadBalancing != PickFirst && c.loadBalancing != RoundRobin:
		return fmt.Errorf("tfner: WithLoadBalancing(%q): use %q or %q", c.loadBalancing, PickFirst, RoundRobin)
	}
	return nil
}
