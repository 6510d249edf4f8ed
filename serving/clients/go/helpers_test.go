package tfner_test

// Shared helpers of the integration tests, which run against a real
// tfner.serve named by environment variables (see README.md, "Testing").

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	tfner "github.com/tfner/tfner/serving/clients/go"
)

// requireEnv returns the variable's value; a missing one fails the test
// rather than skipping it, so that a misconfigured run cannot pass.
func requireEnv(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set; the tests run against a live tfner.serve: set TFNER_SERVER, TFNER_PARITY "+
			"and TFNER_SERVE_COMMAND as serving/clients/go/README.md describes", name)
	}
	return value
}

// envInt returns an integer variable, or def when it is unset.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		return def
	}
	n, err := strconv.Atoi(value)
	if err != nil {
		t.Fatalf("%s=%q is not an integer", name, value)
	}
	return n
}

// newClient returns a client of model "ner" at TFNER_SERVER, closed when
// the test ends.
func newClient(t *testing.T, opts ...tfner.Option) *tfner.NerClient {
	t.Helper()
	return newClientAt(t, requireEnv(t, "TFNER_SERVER"), "ner", opts...)
}

func newClientAt(t *testing.T, target, model string, opts ...tfner.Option) *tfner.NerClient {
	t.Helper()
	client, err := tfner.NewNerClient(target, model, opts...)
	if err != nil {
		t.Fatalf("NewNerClient(%q, %q): %v", target, model, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// countCalls returns an option that counts the client's unary gRPC calls.
func countCalls(counter *atomic.Int64) tfner.Option {
	return tfner.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
			invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			counter.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
}

// testContext is a context that ends after d, or with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

type parityEntity struct {
	Label string  `json:"label"`
	Start int     `json:"start"`
	End   int     `json:"end"`
	Text  string  `json:"text"`
	Score float64 `json:"score"`
}

type parityCase struct {
	Text     string         `json:"text"`
	Entities []parityEntity `json:"entities"`
}

// loadParity reads TFNER_PARITY: the answers computed in process from the
// same SavedModel the server serves.
func loadParity(t *testing.T) []parityCase {
	t.Helper()
	path := requireEnv(t, "TFNER_PARITY")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("TFNER_PARITY: %v", err)
	}
	defer f.Close()
	var cases []parityCase
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 16<<20)
	for line := 1; scanner.Scan(); line++ {
		var c parityCase
		if err := json.Unmarshal(scanner.Bytes(), &c); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		cases = append(cases, c)
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s holds no cases", path)
	}
	return cases
}

// checkEntities compares one text's entities with the expected ones, and
// checks that the byte offsets slice the text to each entity's text.
func checkEntities(t *testing.T, where string, text string, got []tfner.Entity, want []parityEntity) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d entities, want %d\n got: %+v\nwant: %+v", where, len(got), len(want), got, want)
		return
	}
	for i, g := range got {
		w := want[i]
		if g.Label != w.Label || g.Start != w.Start || g.End != w.End || g.Text != w.Text ||
			math.Abs(float64(g.Score)-w.Score) > 1e-4 {
			t.Errorf("%s: entity %d = %+v, want %+v", where, i, g, w)
		}
		checkByteOffsets(t, where, text, g)
	}
}

func checkByteOffsets(t *testing.T, where, text string, e tfner.Entity) {
	t.Helper()
	if e.ByteStart < 0 || e.ByteStart > e.ByteEnd || e.ByteEnd > len(text) {
		t.Errorf("%s: entity %q has byte offsets [%d, %d) in a %d-byte text", where, e.Text, e.ByteStart, e.ByteEnd, len(text))
		return
	}
	if got := text[e.ByteStart:e.ByteEnd]; got != e.Text {
		t.Errorf("%s: text[%d:%d] = %q, want the entity's text %q", where, e.ByteStart, e.ByteEnd, got, e.Text)
	}
	if got := []rune(text)[e.Start:e.End]; string(got) != e.Text {
		t.Errorf("%s: []rune(text)[%d:%d] = %q, want %q", where, e.Start, e.End, string(got), e.Text)
	}
}

// asParity turns a client answer into the expected-answer type, for comparing
// two client answers with checkEntities.
func asParity(entities []tfner.Entity) []parityEntity {
	out := make([]parityEntity, len(entities))
	for i, e := range entities {
		out[i] = parityEntity{Label: e.Label, Start: e.Start, End: e.End, Text: e.Text, Score: float64(e.Score)}
	}
	return out
}
