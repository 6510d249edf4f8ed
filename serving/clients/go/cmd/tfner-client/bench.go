package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	tfner "github.com/tfner/tfner/serving/clients/go"
)

// benchReport is the one JSON line of -bench, read by benchmarks/client_load.py.
type benchReport struct {
	Client          string  `json:"client"`
	Concurrency     int     `json:"concurrency"`
	Requests        int     `json:"requests"`
	Errors          int64   `json:"errors"`
	Seconds         float64 `json:"seconds"`
	TextsPerS       float64 `json:"texts_per_s"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	CPUMsPerRequest float64 `json:"cpu_ms_per_request"`
}

// runBench makes requests one-text Predict calls, cycling through the
// texts of file, from concurrency goroutines that share client, and prints
// one JSON line. It exits 1 (after the line) when every request failed.
func runBench(client *tfner.NerClient, file string, concurrency, requests int, stdout, stderr io.Writer) int {
	if concurrency < 1 || requests < 1 {
		fmt.Fprintln(stderr, "tfner-client: -concurrency and -requests must be >= 1")
		return 2
	}
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "tfner-client:", err)
		return 1
	}
	texts, _ := readLines(bytes.NewReader(data))
	if len(texts) == 0 {
		fmt.Fprintf(stderr, "tfner-client: %s holds no texts; write one per line\n", file)
		return 1
	}

	// Warm-up, untimed: opens the connection and the server's code paths.
	warmup := min(requests, max(2*concurrency, 10))
	latencies := make([]time.Duration, requests)
	callAll(client, texts, concurrency, warmup, make([]time.Duration, warmup))

	cpuBefore := cpuTime()
	start := time.Now()
	errs := callAll(client, texts, concurrency, requests, latencies)
	seconds := time.Since(start).Seconds()
	cpu := cpuTime() - cpuBefore

	// Percentiles of the calls that succeeded (failures are counted in errors).
	var ok []time.Duration
	for _, d := range latencies {
		if d > 0 {
			ok = append(ok, d)
		}
	}
	slices.Sort(ok)
	report := benchReport{
		Client:          "go",
		Concurrency:     concurrency,
		Requests:        requests,
		Errors:          errs,
		Seconds:         round(seconds, 4),
		TextsPerS:       round(float64(len(ok))/seconds, 2),
		P50Ms:           round(percentileMs(ok, 0.50), 3),
		P99Ms:           round(percentileMs(ok, 0.99), 3),
		CPUMsPerRequest: round(float64(cpu)/float64(time.Millisecond)/float64(requests), 4),
	}
	if err := json.NewEncoder(stdout).Encode(report); err != nil {
		fmt.Fprintln(stderr, "tfner-client:", err)
		return 1
	}
	if len(ok) == 0 {
		fmt.Fprintf(stderr, "tfner-client: all %d requests failed; is the server at -server up?\n", requests)
		return 1
	}
	return 0
}

// callAll makes n calls from concurrency goroutines; latencies[i] is call
// i's time, or 0 if it failed. Returns the number of failures.
func callAll(client *tfner.NerClient, texts []string, concurrency, n int, latencies []time.Duration) int64 {
	var next, failures atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				begin := time.Now()
				if _, err := client.Predict(context.Background(), texts[i%len(texts):i%len(texts)+1]); err != nil {
					failures.Add(1)
					continue
				}
				latencies[i] = time.Since(begin)
			}
		})
	}
	wg.Wait()
	return failures.Load()
}

// cpuTime is the user plus system CPU time this process has used.
func cpuTime() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// percentileMs is the nearest-rank percentile of sorted, in milliseconds.
func percentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	return float64(sorted[max(rank, 0)]) / float64(time.Millisecond)
}

func round(x float64, digits int) float64 {
	scale := math.Pow(10, float64(digits))
	return math.Round(x*scale) / scale
}
