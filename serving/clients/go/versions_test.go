package tfner_test

import (
	"strings"
	"testing"
	"time"

	tfner "github.com/tfner/tfner/serving/clients/go"
)

// A pinned version or label is the version that answers.
func TestPredictPinsVersionOrLabel(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  tfner.Option
		want int64
	}{
		{"version 1", tfner.WithVersion(1), 1},
		{"version 2", tfner.WithVersion(2), 2},
		{"label stable", tfner.WithLabel("stable"), 1},
		{"label canary", tfner.WithLabel("canary"), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results, err := newClient(t, tc.opt).Predict(testContext(t, time.Minute), []string{"张伟在北京工作", "李明"})
			if err != nil {
				t.Fatalf("Predict: %v", err)
			}
			for i, r := range results {
				if r.ModelVersion != tc.want {
					t.Errorf("texts[%d] answered by version %d, want %d", i, r.ModelVersion, tc.want)
				}
			}
		})
	}
}

// Status lists both served versions as AVAILABLE.
func TestStatusListsAvailableVersions(t *testing.T) {
	versions, err := newClient(t, tfner.WithLabel("canary")).Status(testContext(t, time.Minute))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	available := map[int64]bool{}
	for _, v := range versions {
		available[v.Version] = v.State == tfner.StateAvailable
	}
	if !available[1] || !available[2] {
		t.Errorf("Status() = %+v; want versions 1 and 2 AVAILABLE", versions)
	}
}

// round_robin over a dns:/// target reaches the server like pick_first.
func TestRoundRobinLoadBalancing(t *testing.T) {
	client := newClient(t, tfner.WithLoadBalancing(tfner.RoundRobin))
	results, err := client.Predict(testContext(t, time.Minute), []string{"张伟在北京工作"})
	if err != nil || len(results) != 1 {
		t.Fatalf("Predict with round_robin = %v, %v", results, err)
	}
}

// Contradictory or out-of-range options are refused when the client is built.
func TestNewNerClientRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opts []tfner.Option
		want string
	}{
		{[]tfner.Option{tfner.WithVersion(1), tfner.WithLabel("stable")}, "pin one or the other"},
		{[]tfner.Option{tfner.WithVersion(-1)}, "non-negative"},
		{[]tfner.Option{tfner.WithChunkSize(0)}, "WithChunkSize(0)"},
		{[]tfner.Option{tfner.WithTimeout(0)}, "deadline must be positive"},
		{[]tfner.Option{tfner.WithRetries(-1)}, "WithRetries(-1)"},
		{[]tfner.Option{tfner.WithBackoff(time.Second, time.Millisecond)}, "0 < base <= max"},
		{[]tfner.Option{tfner.WithConcurrency(0)}, "WithConcurrency(0)"},
		{[]tfner.Option{tfner.WithLoadBalancing("random")}, `"round_robin"`},
	} {
		client, err := tfner.NewNerClient("127.0.0.1:1", "ner", tc.opts...)
		if err == nil {
			client.Close()
			t.Errorf("NewNerClient(%s...) succeeded; want an error", tc.want)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewNerClient error %q does not mention %q", err, tc.want)
		}
	}
	// Version 0 is a version like any other (the other clients send it too).
	client, err := tfner.NewNerClient("127.0.0.1:1", "ner", tfner.WithVersion(0))
	if err != nil {
		t.Errorf("NewNerClient(WithVersion(0)): %v", err)
	} else {
		client.Close()
	}
}
