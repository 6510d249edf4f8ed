package main

// The command against the real server named by TFNER_SERVER, as in the
// library's tests.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func server(t *testing.T) string {
	t.Helper()
	address := os.Getenv("TFNER_SERVER")
	if address == "" {
		t.Fatal("TFNER_SERVER is not set; the tests run against a live tfner.serve (see README.md)")
	}
	return address
}

func runCommand(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPrintsOneJSONLinePerText(t *testing.T) {
	texts := []string{"😀张伟在北京工作", "", "李明，汉族，中国国籍。"}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"arguments", "", append([]string{"-server", server(t), "--label", "stable"}, texts...)},
		{"stdin", strings.Join(texts, "\r\n") + "\n", []string{"--server", server(t), "--version", "2", "--timeout", "5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, tc.stdin, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != len(texts) {
				t.Fatalf("%d lines for %d texts:\n%s", len(lines), len(texts), stdout)
			}
			for i, line := range lines {
				var got lineJSON
				if err := json.Unmarshal([]byte(line), &got); err != nil {
					t.Fatalf("line %d %q: %v", i, line, err)
				}
				if got.Text != texts[i] || got.Entities == nil {
					t.Errorf("line %d = %s; want text %q and an entities array", i, line, texts[i])
				}
				for _, e := range got.Entities {
					if got.Text[e.ByteStart:e.ByteEnd] != e.Text || string([]rune(got.Text)[e.Start:e.End]) != e.Text {
						t.Errorf("line %d: offsets of %+v do not slice the text", i, e)
					}
				}
			}
		})
	}
}

func TestStandardInputDropsAByteOrderMarkAtItsStartOnly(t *testing.T) {
	lines, err := readLines(strings.NewReader("\ufeff北京\r\r\n\ufeff上海\n"))
	if err != nil || len(lines) != 2 || lines[0] != "北京" || lines[1] != "\ufeff上海" {
		t.Errorf("readLines = %q, %v; want [北京 \\ufeff上海]", lines, err)
	}
}

// Standard input holding only a byte-order mark (an "empty" file saved by
// Notepad) holds no text, as for the other clients; a BOM and a line ending
// hold one empty text.
func TestStandardInputOfOnlyAByteOrderMarkHoldsNoText(t *testing.T) {
	if lines, err := readLines(strings.NewReader("\ufeff")); err != nil || len(lines) != 0 {
		t.Errorf("readLines(BOM) = %q, %v; want no lines", lines, err)
	}
	if lines, err := readLines(strings.NewReader("\ufeff\r\n")); err != nil || len(lines) != 1 || lines[0] != "" {
		t.Errorf("readLines(BOM CR LF) = %q, %v; want one empty line", lines, err)
	}
}

func TestStandardInputLinesOfAnyLength(t *testing.T) {
	long := strings.Repeat("北", 22<<20) // 66 MiB, past the 64 MiB a bufio.Scanner buffer held
	lines, err := readLines(strings.NewReader(long + "\r\n\n上海"))
	if err != nil || len(lines) != 3 || lines[0] != long || lines[1] != "" || lines[2] != "上海" {
		t.Errorf("readLines = %d lines (%v); want 3: the 66 MiB line, an empty one, 上海", len(lines), err)
	}
	lines, err = readLines(strings.NewReader(""))
	if err != nil || len(lines) != 0 {
		t.Errorf("readLines of nothing = %q, %v; want no lines", lines, err)
	}
}

// Bad input is the caller's mistake, like a bad flag: exit 2, as the Python
// command does, and not 1, which says the server refused. No server is
// needed: the client connects on its first call, which never comes.
func TestStandardInputThatIsNotUTF8ExitsTwoNamingTheLine(t *testing.T) {
	gbk := "\xb1\xb1\xbe\xa9" // 北京 in GBK
	code, stdout, stderr := runCommand(t, "北京\n"+gbk+"\n", "-server", "127.0.0.1:1")
	want := "tfner-client: standard input line 2 is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8\n"
	if code != 2 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, %q", code, stdout, stderr, want)
	}
}

func TestATextArgumentThatIsNotUTF8ExitsTwoNamingIt(t *testing.T) {
	code, stdout, stderr := runCommand(t, "", "-server", "127.0.0.1:1", "北京", "\xb1\xb1\xbe\xa9")
	want := "tfner-client: text argument 2 is not valid UTF-8; convert it, e.g. with iconv -f GBK -t UTF-8\n"
	if code != 2 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, %q", code, stdout, stderr, want)
	}
}

// A -timeout that is not a number of seconds a deadline can hold is a bad
// command line, said as such (not as the overflowed time.Duration that
// WithTimeout would be given).
func TestTimeoutOutOfRangeExitsTwoSayingWhy(t *testing.T) {
	for _, timeout := range []string{"inf", "nan", "1e10", "0", "-1"} {
		code, stdout, stderr := runCommand(t, "", "-server", "127.0.0.1:1", "-timeout", timeout, "北京")
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "tfner-client: -timeout takes seconds > 0 and < 1e9, e.g. 2.5; got ") {
			t.Errorf("-timeout %s: exit %d, stdout %q, stderr %q; want 2 and what -timeout takes", timeout, code, stdout, stderr)
		}
	}
}

func TestRefusedCallExitsOneWithCode(t *testing.T) {
	code, stdout, stderr := runCommand(t, "", "-server", server(t), "-model", "no_such_model", "北京")
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "tfner-client: NOT_FOUND: ") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, \"tfner-client: NOT_FOUND: ...\"", code, stdout, stderr)
	}
}

func TestBenchPrintsOneReport(t *testing.T) {
	file := filepath.Join(t.TempDir(), "texts.txt")
	if err := os.WriteFile(file, []byte("张伟在北京工作\n李明\n😀上海\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCommand(t, "", "-server", server(t), "-bench", file, "-concurrency", "4", "-requests", "40")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(stdout), &fields); err != nil || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("want one JSON line, got %q (%v)", stdout, err)
	}
	for _, key := range []string{"client", "concurrency", "requests", "errors", "seconds", "texts_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request"} {
		if _, ok := fields[key]; !ok {
			t.Errorf("report %s lacks %q", stdout, key)
		}
	}
	if fields["client"] != "go" || fields["concurrency"] != 4.0 || fields["requests"] != 40.0 || fields["errors"] != 0.0 {
		t.Errorf("report %s; want client go, concurrency 4, requests 40, errors 0", stdout)
	}
}
