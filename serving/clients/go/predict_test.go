package tfner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tfner "github.com/tfner/tfner/serving/clients/go"
)

// Every text of the parity file, chunked and concurrent as by default,
// comes back as the model computed in process.
func TestPredictMatchesParityFile(t *testing.T) {
	cases := loadParity(t)
	texts := make([]string, len(cases))
	for i, c := range cases {
		texts[i] = c.Text
	}
	client := newClient(t)
	results, err := client.Predict(testContext(t, time.Minute), texts)
	if err != nil {
		t.Fatalf("Predict(%d parity texts): %v", len(texts), err)
	}
	if len(results) != len(texts) {
		t.Fatalf("%d results for %d texts", len(results), len(texts))
	}
	entities := 0
	for i, c := range cases {
		checkEntities(t, fmt.Sprintf("parity line %d", i+1), c.Text, results[i].Entities, c.Entities)
		entities += len(c.Entities)
	}
	t.Logf("%d texts, %d entities", len(cases), entities)
}

// 100 texts in chunks of 7 take 15 calls, and each answer lands at its text.
func TestPredictChunksKeepInputOrder(t *testing.T) {
	texts := make([]string, 100)
	for i := range texts {
		// Distinct texts whose entities sit at offsets that vary with i.
		texts[i] = fmt.Sprintf("编号%d：张伟在北京的阿里巴巴工作。", i*37)
	}
	var calls atomic.Int64
	chunked := newClient(t, tfner.WithChunkSize(7), tfner.WithConcurrency(3), countCalls(&calls))
	got, err := chunked.Predict(testContext(t, time.Minute), texts)
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	if calls.Load() != 15 {
		t.Errorf("100 texts in chunks of 7 made %d calls, want 15", calls.Load())
	}
	// The reference: all 100 texts in one call, where the server keeps order.
	whole, err := newClient(t, tfner.WithChunkSize(len(texts))).Predict(testContext(t, time.Minute), texts)
	if err != nil {
		t.Fatalf("Predict in one call: %v", err)
	}
	for i := range texts {
		checkEntities(t, fmt.Sprintf("texts[%d]", i), texts[i], got[i].Entities, asParity(whole[i].Entities))
		if got[i].ModelVersion == 0 {
			t.Errorf("texts[%d]: no model version in the result", i)
		}
	}
}

// Nothing to send: no call, an empty answer.
func TestPredictNoTexts(t *testing.T) {
	var calls atomic.Int64
	results, err := newClient(t, countCalls(&calls)).Predict(testContext(t, time.Minute), nil)
	if err != nil || len(results) != 0 || calls.Load() != 0 {
		t.Errorf("Predict(nil) = %v, %v after %d calls; want no results, no error, no call", results, err, calls.Load())
	}
}

// Invalid UTF-8 is refused before any call, naming the text.
func TestPredictRefusesInvalidUTF8(t *testing.T) {
	var calls atomic.Int64
	client := newClient(t, countCalls(&calls))
	_, err := client.Predict(testContext(t, time.Minute), []string{"北京欢迎你", "ok", "他从\xe4\xb8上海来"})
	var invalid *tfner.InvalidTextError
	if !errors.As(err, &invalid) {
		t.Fatalf("Predict(invalid UTF-8) error = %v, want an *InvalidTextError", err)
	}
	if invalid.Index != 2 || invalid.Offset != 6 {
		t.Errorf("InvalidTextError{Index: %d, Offset: %d}, want texts[2] at byte 6", invalid.Index, invalid.Offset)
	}
	if !errors.Is(err, tfner.ErrInvalidArgument) {
		t.Errorf("errors.Is(%v, ErrInvalidArgument) = false", err)
	}
	if calls.Load() != 0 {
		t.Errorf("%d calls were made; invalid text must be refused before calling", calls.Load())
	}
}

// A server that answers, but not as a tfner model does (here a stub's empty
// PredictResponse, which names no model), gets an error naming the model
// the client asked for.
func TestPredictNamesTheModelOfAMalformedResponse(t *testing.T) {
	stub := &stubPredictions{answer: func(ctx context.Context, call int, texts []string) error { return nil }}
	client := newClientAt(t, startStub(t, stub), "ner", tfner.WithRetries(0))
	_, err := client.Predict(testContext(t, time.Minute), []string{"北京"})
	if err == nil || !strings.Contains(err.Error(), `is "ner" a tfner model?`) {
		t.Errorf("Predict error = %v, want one asking whether \"ner\" is a tfner model", err)
	}
}

// 16 goroutines share one client; each gets the right answers.
func TestPredictConcurrentCallersShareOneClient(t *testing.T) {
	cases := loadParity(t)
	client := newClient(t)
	ctx := testContext(t, time.Minute)
	const callers = 16
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for round := range 3 {
				var texts []string
				var want []parityCase
				for i := g + round; i < len(cases); i += callers { // A different slice per caller and round.
					texts = append(texts, cases[i].Text)
					want = append(want, cases[i])
				}
				results, err := client.Predict(ctx, texts)
				if err != nil {
					t.Errorf("caller %d round %d: %v", g, round, err)
					return
				}
				for i, c := range want {
					checkEntities(t, fmt.Sprintf("caller %d round %d text %d", g, round, i), c.Text, results[i].Entities, c.Entities)
				}
			}
		})
	}
	wg.Wait()
}
