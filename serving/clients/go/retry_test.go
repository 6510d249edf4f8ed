package tfner_test

// The retry rules, against a stub PredictionService on loopback: unlike the
// other tests they need no tfner.serve, which cannot be made to cancel a
// call on cue.

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tfner "github.com/tfner/tfner/serving/clients/go"
	"github.com/tfner/tfner/serving/clients/go/internal/pb/serving"
)

// A stopping server cancels the calls it accepted but never ran; the retry
// reaches whatever answers next (here the same stub, which refuses the
// second call with NOT_FOUND so that the test can tell).
func TestServerCancelledCallIsRetried(t *testing.T) {
	stub := &stubPredictions{answer: func(ctx context.Context, call int, texts []string) error {
		if call == 1 {
			return status.Error(codes.Canceled, "CANCELLED")
		}
		return status.Error(codes.NotFound, "second call")
	}}
	client := newClientAt(t, startStub(t, stub), "ner", tfner.WithRetries(3), tinyBackoff)
	_, err := client.Predict(testContext(t, time.Minute), []string{"北京"})
	var e *tfner.Error
	if !errors.As(err, &e) || e.Kind != tfner.KindNotFound || !strings.Contains(e.Message, "second call") {
		t.Fatalf("Predict error = %v, want the second call's NOT_FOUND", err)
	}
	if e.Attempts != 2 {
		t.Errorf("error %v after %d attempts, want 2", err, e.Attempts)
	}
	requests := stub.received()
	if len(requests) != 2 || !proto.Equal(requests[0], requests[1]) {
		t.Errorf("the server saw %d calls, want 2 with equal requests: %v", len(requests), requests)
	}
}

// A caller that gives up gets CANCELLED at once, not a retry.
func TestCallerCancellationIsNotRetried(t *testing.T) {
	entered := make(chan struct{})
	stub := &stubPredictions{answer: func(ctx context.Context, call int, texts []string) error {
		if call == 1 {
			close(entered)
		}
		return waitForCancel(ctx)
	}}
	client := newClientAt(t, startStub(t, stub), "ner", tfner.WithRetries(3), tinyBackoff)
	ctx, cancel := context.WithCancel(testContext(t, time.Minute))
	go func() { <-entered; cancel() }()
	_, err := client.Predict(ctx, []string{"北京"})
	var e *tfner.Error
	if !errors.As(err, &e) || e.Code != codes.Canceled || e.Attempts != 1 {
		t.Fatalf("Predict error = %v, want CANCELLED after 1 attempt", err)
	}
	if n := len(stub.received()); n != 1 {
		t.Errorf("the server saw %d calls, want 1", n)
	}
}

// When one chunk fails, Predict cancels the others: they are not sent again,
// and the caller gets the failure, not the cancellations.
func TestCancelledChunksAreNotRetried(t *testing.T) {
	blocked := make(chan struct{})
	stub := &stubPredictions{answer: func(ctx context.Context, call int, texts []string) error {
		if texts[0] == "北京" { // Waits for Predict to cancel it.
			close(blocked)
			return waitForCancel(ctx)
		}
		<-blocked // Fails once the other chunk is in the server.
		return status.Error(codes.NotFound, "failed chunk")
	}}
	client := newClientAt(t, startStub(t, stub), "ner",
		tfner.WithChunkSize(1), tfner.WithConcurrency(2), tfner.WithRetries(3), tinyBackoff)
	_, err := client.Predict(testContext(t, time.Minute), []string{"北京", "上海"})
	var e *tfner.Error
	if !errors.As(err, &e) || e.Kind != tfner.KindNotFound || !strings.Contains(e.Message, "failed chunk") {
		t.Fatalf("Predict error = %v, want the failed chunk's NOT_FOUND", err)
	}
	if n := len(stub.received()); n != 2 {
		t.Errorf("the server saw %d calls, want 2, one per chunk", n)
	}
}

// A closed client's calls fail with CANCELLED, which is not retried.
func TestClosedClientDoesNotRetry(t *testing.T) {
	client, err := tfner.NewNerClient(startStub(t, &stubPredictions{}), "ner", tfner.WithRetries(3), tinyBackoff)
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	_, err = client.Predict(testContext(t, time.Minute), []string{"北京"})
	var e *tfner.Error
	if !errors.As(err, &e) || e.Code != codes.Canceled || e.Attempts != 1 {
		t.Fatalf("Predict after Close: error = %v, want CANCELLED after 1 attempt", err)
	}
}

// A connection slower to set up than the first backoff (a distant server, a
// TLS handshake) is waited for, not abandoned and counted as a failed attempt.
func TestSlowConnectionIsWaitedFor(t *testing.T) {
	stub := &stubPredictions{answer: func(ctx context.Context, call int, texts []string) error {
		return status.Error(codes.NotFound, "reached")
	}}
	slowDial := grpc.WithContextDialer(func(ctx context.Context, address string) (net.Conn, error) {
		select {
		case <-time.After(3 * tfner.DefaultBaseBackoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", address)
	})
	client := newClientAt(t, startStub(t, stub), "ner", tfner.WithRetries(0), tfner.WithDialOptions(slowDial))
	_, err := client.Predict(testContext(t, time.Minute), []string{"北京"})
	if !errors.Is(err, tfner.ErrNotFound) || !strings.Contains(err.Error(), "reached") {
		t.Errorf("Predict error = %v, want the server's NOT_FOUND", err)
	}
}

var tinyBackoff = tfner.WithBackoff(time.Millisecond, time.Millisecond)

// stubPredictions is a PredictionService whose Predict records each request
// and fails with answer(ctx, n, texts) for the n-th call, counting from 1.
type stubPredictions struct {
	serving.UnimplementedPredictionServiceServer
	answer   func(ctx context.Context, call int, texts []string) error
	mu       sync.Mutex
	requests []*serving.PredictRequest
}

func (s *stubPredictions) Predict(ctx context.Context, request *serving.PredictRequest) (*serving.PredictResponse, error) {
	s.mu.Lock()
	s.requests = append(s.requests, request)
	call := len(s.requests)
	s.mu.Unlock()
	var texts []string
	for _, text := range request.GetInputs()["text"].GetStringVal() {
		texts = append(texts, string(text))
	}
	return nil, s.answer(ctx, call, texts)
}

func (s *stubPredictions) received() []*serving.PredictRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// waitForCancel blocks until the client cancels the call.
func waitForCancel(ctx context.Context) error {
	<-ctx.Done()
	return status.FromContextError(ctx.Err()).Err()
}

// startStub serves stub on a free loopback port until the test ends and
// returns its address.
func startStub(t *testing.T, stub serving.PredictionServiceServer) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	server := grpc.NewServer()
	serving.RegisterPredictionServiceServer(server, stub)
	go server.Serve(listener)
	t.Cleanup(server.Stop)
	return listener.Addr().String()
}
