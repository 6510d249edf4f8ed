package tfner

import "testing"

// Round-robin rewrites a bare host:port to dns:///host:port, and leaves every target URI a gRPC resolver
// handles as it is: "unix:/path" used to become "dns:///unix:/path" and reach nothing.
func TestHasResolverScheme(t *testing.T) {
	for target, want := range map[string]bool{
		"localhost:8500":       false,
		"10.0.0.7:8500":        false,
		"[::1]:8500":           false,
		"tfner-serving:8500":   false,
		"dns:///tfner:8500":    true,
		"passthrough:///h:1":   true,
		"unix:/tmp/tfner.sock": true,
		"unix-abstract:tfner":  true,
	} {
		if got := hasResolverScheme(target); got != want {
			t.Errorf("hasResolverScheme(%q) = %v; want %v", target, got, want)
		}
	}
}
