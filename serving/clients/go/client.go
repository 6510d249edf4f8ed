package tfner

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"

	"github.com/tfner/tfner/serving/clients/go/internal/pb/serving"
)

// maxResponseBytes bounds one response: a chunk of long texts with many
// entities is far larger than gRPC's default 4 MiB limit would allow.
const maxResponseBytes = 64 << 20

// NerClient calls a tfner model's serving_default signature over gRPC. It is
// safe for concurrent use; create one per server and share it.
type NerClient struct {
	conn        *grpc.ClientConn
	predictions serving.PredictionServiceClient
	models      serving.ModelServiceClient
	model       string
	cfg         config
}

// NewNerClient returns a client of model (e.g. "ner") at target, a
// "host:port" (resolved through DNS) or any gRPC target URI. It connects
// lazily, on the first call; Close releases the connection.
func NewNerClient(target, model string, opts ...Option) (*NerClient, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if model == "" {
		return nil, fmt.Errorf("tfner: the model name is empty; name the served model, e.g. \"ner\"")
	}
	creds := insecure.NewCredentials()
	if cfg.tls != nil {
		creds = credentials.NewTLS(cfg.tls)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)),
		// gRPC waits up to 2 minutes between reconnection attempts by default;
		// pace them like the retries instead, so that the retries of a call
		// find a restarted server soon after it is back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  cfg.baseBackoff,
				Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter:     backoff.DefaultConfig.Jitter,
				MaxDelay:   cfg.maxBackoff,
			},
			// gRPC's default, which ConnectParams would otherwise zero: a
			// connection attempt (TCP, TLS) would then get only the backoff
			// delay, 100 ms at first, and fail with UNAVAILABLE against any
			// server farther or slower than that.
			MinConnectTimeout: 20 * time.Second,
		}),
	}
	if cfg.loadBalancing == RoundRobin {
		if !hasResolverScheme(target) { // "host:port"; not "unix:/path", "dns:///..." or another target URI
			target = "dns:///" + target
		}
		dial = append(dial, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`))
	}
	conn, err := grpc.NewClient(target, append(dial, cfg.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("tfner: target %q: %v", target, err)
	}
	return &NerClient{
		conn:        conn,
		predictions: serving.NewPredictionServiceClient(conn),
		models:      serving.NewModelServiceClient(conn),
		model:       model,
		cfg:         cfg,
	}, nil
}

// Close releases the client's connection; calls in flight fail.
func (c *NerClient) Close() error {
	return c.conn.Close()
}

// Predict finds the entities of each text: Predict(ctx, texts)[i] belongs
// to texts[i]. Texts go to the server in chunks of at most WithChunkSize,
// WithConcurrency of them at once; each chunk is one call with its own
// deadline and retries. Every text must be valid UTF-8 (else an
// *InvalidTextError, before any call). A refused call returns an *Error,
// and the first failed chunk cancels the others.
func (c *NerClient) Predict(ctx context.Context, texts []string) ([]Result, error) {
	if err := validateTexts(texts); err != nil {
		return nil, err
	}
	results := make([]Result, len(texts))
	size := c.cfg.chunkSize
	if len(texts) <= size { // The common case needs no goroutine.
		if len(texts) == 0 {
			return results, nil
		}
		if err := c.predictChunk(ctx, texts, results); err != nil {
			return nil, err
		}
		return results, nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		slots    = make(chan struct{}, c.cfg.concurrency)
	)
	launched := 0
	for begin := 0; begin < len(texts); begin += size {
		end := min(begin+size, len(texts))
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break // A chunk failed (firstErr is set) or the caller gave up.
		}
		launched = end
		wg.Go(func() {
			defer func() { <-slots }()
			if err := c.predictChunk(ctx, texts[begin:end], results[begin:end]); err != nil {
				// Keep the first failure, not the cancellations it causes.
				once.Do(func() { firstErr = err; cancel() })
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if launched < len(texts) { // The caller's context ended first.
		return nil, contextError(ctx, 0)
	}
	return results, nil
}

// predictChunk makes one Predict call for texts and writes out.
func (c *NerClient) predictChunk(ctx context.Context, texts []string, out []Result) error {
	request := newPredictRequest(c.model, &c.cfg, texts)
	var response *serving.PredictResponse
	err := c.withRetries(ctx, func(ctx context.Context) error {
		var err error
		response, err = c.predictions.Predict(ctx, request)
		return err
	})
	if err != nil {
		return err
	}
	if err := decodeResponse(response, c.model, texts, out); err != nil {
		return fmt.Errorf("tfner: malformed response from model %q: %v", c.model, err)
	}
	return nil
}

// hasResolverScheme reports whether target starts with the scheme of a registered gRPC resolver, as
// grpc.NewClient parses it ("unix:/tmp/s", "unix-abstract:x", "dns:///h:p", "passthrough:///h:p").
func hasResolverScheme(target string) bool {
	u, err := url.Parse(target)
	return err == nil && u.Scheme != "" && resolver.Get(u.Scheme) != nil
}
