package tfner_test

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	tfner "github.com/tfner/tfner/serving/clients/go"
)

// Each gRPC status class comes back as an *Error of its Kind, matching its
// sentinel, with the status message; each is provoked on a real server.
func TestErrorClasses(t *testing.T) {
	server := requireEnv(t, "TFNER_SERVER")
	maxTexts := envInt(t, "TFNER_MAX_TEXTS_PER_REQUEST", 128)
	maxChars := envInt(t, "TFNER_MAX_CHARS_PER_REQUEST", 20000)
	long := string([]rune(strings.Repeat("张伟在北京的阿里巴巴工作。", 250))[:3000])
	closedPort := closedAddress(t)

	for _, tc := range []struct {
		name     string
		target   string
		model    string
		opts     []tfner.Option
		texts    []string
		kind     tfner.Kind
		code     codes.Code
		sentinel error
		attempts int
	}{
		{"unknown model", server, "no_such_model", nil, []string{"北京"},
			tfner.KindNotFound, codes.NotFound, tfner.ErrNotFound, 1},
		{"more texts than max_texts_per_request", server, "ner",
			[]tfner.Option{tfner.WithChunkSize(maxTexts + 1)}, repeat("北京", maxTexts+1),
			tfner.KindInvalidArgument, codes.InvalidArgument, tfner.ErrInvalidArgument, 1},
		{"more characters than max_chars_per_request", server, "ner",
			[]tfner.Option{tfner.WithChunkSize(maxTexts)}, repeat(long, maxChars/3000+1),
			tfner.KindResourceExhausted, codes.ResourceExhausted, tfner.ErrResourceExhausted, 1},
		{"closed port, after retries", closedPort, "ner",
			[]tfner.Option{tfner.WithRetries(2), tfner.WithBackoff(5*time.Millisecond, 20*time.Millisecond)}, []string{"北京"},
			tfner.KindUnavailable, codes.Unavailable, tfner.ErrUnavailable, 3},
		{"1 ms deadline on a 3,000-character text", server, "ner",
			[]tfner.Option{tfner.WithTimeout(time.Millisecond), tfner.WithRetries(0)}, []string{long},
			tfner.KindDeadlineExceeded, codes.DeadlineExceeded, tfner.ErrDeadlineExceeded, 1},
		{"TLS client, plaintext server", server, "ner",
			[]tfner.Option{tfner.WithTLS(&tls.Config{}), tfner.WithRetries(0)}, []string{"北京"},
			tfner.KindUnavailable, codes.Unavailable, tfner.ErrUnavailable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := newClientAt(t, tc.target, tc.model, tc.opts...)
			_, err := client.Predict(testContext(t, time.Minute), tc.texts)
			var e *tfner.Error
			if !errors.As(err, &e) {
				t.Fatalf("Predict error = %v, want a *tfner.Error", err)
			}
			if e.Kind != tc.kind || e.Code != tc.code || !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v has Kind %v, Code %v; want %v, %v, matching %v", err, e.Kind, e.Code, tc.kind, tc.code, tc.sentinel)
			}
			if e.Message == "" {
				t.Errorf("error %v carries no message", err)
			}
			if e.Attempts != tc.attempts {
				t.Errorf("error %v after %d attempts, want %d", err, e.Attempts, tc.attempts)
			}
			t.Logf("%v", err)
		})
	}
}

// The server's own words reach the caller.
func TestErrorCarriesServerMessage(t *testing.T) {
	_, err := newClientAt(t, requireEnv(t, "TFNER_SERVER"), "no_such_model").Predict(testContext(t, time.Minute), []string{"北京"})
	var e *tfner.Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "no_such_model") {
		t.Errorf("error %v does not carry the server's message naming the model", err)
	}
	if !strings.HasPrefix(err.Error(), "tfner: NOT_FOUND: ") {
		t.Errorf("Error() = %q, want it to start with the code name", err)
	}
}

// closedAddress is a loopback address where nothing listens.
func closedAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	address := listener.Addr().String()
	listener.Close()
	return address
}

func repeat(text string, n int) []string {
	texts := make([]string, n)
	for i := range texts {
		texts[i] = text
	}
	return texts
}
