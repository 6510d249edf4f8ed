package tfner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tfner "github.com/tfner/tfner/serving/clients/go"
)

var readyLine = regexp.MustCompile(`tfner\.serve ready: grpc_port=(\d+)`)

// A caller keeps calling while the server is stopped and started again on
// the same port; the retries cover the gap, so every call succeeds.
func TestCallsSurviveServerRestart(t *testing.T) {
	t.Parallel() // Mostly waiting for server start-ups: overlap the other tests.
	var argv []string
	if err := json.Unmarshal([]byte(requireEnv(t, "TFNER_SERVE_COMMAND")), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("TFNER_SERVE_COMMAND must be a JSON array of strings (the argv of tfner.serve): %v", err)
	}
	port := closedAddress(t)[len("127.0.0.1:"):]
	first := startServer(t, argv, port)

	// Retries at most 0.5 s apart, enough for minutes: a TensorFlow start-up
	// takes 5-15 s, more on a busy machine. Each call's context bounds them.
	client := newClientAt(t, "127.0.0.1:"+port, "ner",
		tfner.WithRetries(1000), tfner.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
	texts := []string{"张伟在北京的阿里巴巴工作。"}
	want, err := client.Predict(testContext(t, time.Minute), texts)
	if err != nil {
		t.Fatalf("Predict before the restart: %v", err)
	}

	var (
		calls    atomic.Int64
		stopping atomic.Bool
		done     = make(chan struct{})
		errs     []error
	)
	callerCtx, cancelCaller := context.WithCancel(context.Background())
	t.Cleanup(func() { cancelCaller(); <-done }) // Should the test end early.
	go func() {
		defer close(done)
		for !stopping.Load() && callerCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(callerCtx, 4*time.Minute)
			got, err := client.Predict(ctx, texts)
			cancel()
			if err == nil && len(got[0].Entities) != len(want[0].Entities) {
				err = fmt.Errorf("%d entities, want %d", len(got[0].Entities), len(want[0].Entities))
			}
			if err != nil && callerCtx.Err() == nil {
				errs = append(errs, err)
			}
			calls.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitForCalls(t, &calls, 3, "before the restart")
	down := time.Now()
	first.stop(t)
	startServer(t, argv, port)
	downtime := time.Since(down)
	waitForCalls(t, &calls, calls.Load()+3, "after the restart")
	stopping.Store(true)
	<-done
	for _, err := range errs {
		t.Errorf("a call failed across the restart: %v", err)
	}
	t.Logf("%d calls, none failed; the server was down (stopping, starting) for %v", calls.Load(), downtime.Round(time.Second))
}

func waitForCalls(t *testing.T, calls *atomic.Int64, n int64, when string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for calls.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls completed %s in 3 minutes", calls.Load(), when)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverProcess is one tfner.serve started by a test.
type serverProcess struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
	mu       sync.Mutex
	log      []string // Its stderr's last lines, for failure messages.
}

// startServer starts argv with --port port, waits for its ready line, and
// stops it when the test ends.
func startServer(t *testing.T, argv []string, port string) *serverProcess {
	t.Helper()
	cmd := exec.Command(argv[0], append(argv[1:len(argv):len(argv)], "--port", port)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Its own group, to kill any child too.
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q: %v", argv, err)
	}
	s := &serverProcess{cmd: cmd, exited: make(chan struct{})}
	t.Cleanup(func() { s.stop(t) })
	ready := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			line := scanner.Text()
			s.mu.Lock()
			s.log = append(s.log[max(0, len(s.log)-30):], line)
			s.mu.Unlock()
			if m := readyLine.FindStringSubmatch(line); m != nil {
				ready <- m[1]
			}
		}
		cmd.Wait() // After stderr is drained, as exec requires.
		close(s.exited)
	}()
	select {
	case got := <-ready:
		if got != port {
			t.Fatalf("the server reports grpc_port=%s; it was started with --port %s", got, port)
		}
	case <-s.exited:
		t.Fatalf("%q exited before it was ready: %v\n%s", argv, cmd.ProcessState, s.tail())
	case <-time.After(3 * time.Minute):
		t.Fatalf("%q was not ready within 3 minutes\n%s", argv, s.tail())
	}
	return s
}

// stop sends SIGTERM (tfner.serve finishes calls in flight and exits), then
// SIGKILL to the group if it lingers.
func (s *serverProcess) stop(t *testing.T) {
	s.stopOnce.Do(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("the server ignored SIGTERM for 30 s; killing it\n%s", s.tail())
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
		if state := s.cmd.ProcessState; !state.Success() {
			t.Logf("the server exited with %v after SIGTERM, want 0\n%s", state, s.tail())
		}
	})
}

func (s *serverProcess) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}
