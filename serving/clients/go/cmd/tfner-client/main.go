// Command tfner-client prints the entities of each text as one JSON line,
// like python -m tfner.client, or benchmarks a server with -bench.
//
//	tfner-client -server localhost:8500 北京欢迎你 他从上海来
//	tfner-client -server localhost:8500 -label canary < texts.txt
//	tfner-client -server localhost:8500 -bench texts.txt -concurrency 8 -requests 2000
//
// Each line is {"text": ..., "entities": [{"label", "start", "end", "text",
// "score", "byte_start", "byte_end"}]}: start and end count code points,
// byte_start and byte_end bytes of the UTF-8 text. When the server refuses a
// call it prints "CODE: message" on stderr and exits 1; a bad command line, or
// a text (argument or line of standard input) that is not UTF-8, exits 2.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	tfner "github.com/tfner/tfner/serving/clients/go"
)

type entityJSON struct {
	Label     string  `json:"label"`
	Start     int     `json:"start"`
	End       int     `json:"end"`
	Text      string  `json:"text"`
	Score     float32 `json:"score"`
	ByteStart int     `json:"byte_start"`
	ByteEnd   int     `json:"byte_end"`
}

type lineJSON struct {
	Text     string       `json:"text"`
	Entities []entityJSON `json:"entities"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("tfner-client", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: tfner-client -server HOST:PORT [flags] [TEXT ...]   (no TEXT: one per line on stdin)")
		fmt.Fprintln(stderr, "       tfner-client -server HOST:PORT -bench FILE [-concurrency C] [-requests N]")
		flags.PrintDefaults()
	}
	server := flags.String("server", "", "host:port of the gRPC API (required)")
	model := flags.String("model", "ner", "model name")
	version := flags.Int64("version", 0, "pin this model version")
	label := flags.String("label", "", "pin this version label, e.g. stable or canary")
	timeout := flags.Float64("timeout", tfner.DefaultTimeout.Seconds(), "deadline of each call, in seconds")
	retries := flags.Int("retries", tfner.DefaultRetries, "retries after UNAVAILABLE (or a server's CANCELLED)")
	chunkSize := flags.Int("chunk-size", tfner.DefaultChunkSize, "most texts per call")
	useTLS := flags.Bool("tls", false, "connect over TLS (system root certificates)")
	balancing := flags.String("load-balancing", tfner.PickFirst, "pick_first, or round_robin over every address of the DNS name")
	bench := flags.String("bench", "", "benchmark: run -requests one-text calls cycling through the texts of this file")
	concurrency := flags.Int("concurrency", 1, "benchmark: concurrent callers sharing one client")
	requests := flags.Int("requests", 1000, "benchmark: timed calls")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	set := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *server == "" {
		fmt.Fprintln(stderr, "tfner-client: -server HOST:PORT is required")
		return 2
	}
	if set["version"] && set["label"] {
		fmt.Fprintln(stderr, "tfner-client: pass -version or -label, not both")
		return 2
	}
	// Checked as seconds, before the conversion: a time.Duration holds at most
	// ~292 years, and inf, nan or 1e10 s would overflow it into a negative
	// deadline. 1e9 s (~31 years) is the bound of the other clients' commands.
	// Negated, so that nan, which fails every comparison, is refused too.
	if !(*timeout > 0 && *timeout < 1e9) {
		fmt.Fprintf(stderr, "tfner-client: -timeout takes seconds > 0 and < 1e9, e.g. 2.5; got %v\n", *timeout)
		return 2
	}

	opts := []tfner.Option{
		tfner.WithTimeout(time.Duration(*timeout * float64(time.Second))),
		tfner.WithRetries(*retries),
		tfner.WithChunkSize(*chunkSize),
		tfner.WithLoadBalancing(*balancing),
	}
	if set["version"] {
		opts = append(opts, tfner.WithVersion(*version))
	}
	if *label != "" {
		opts = append(opts, tfner.WithLabel(*label))
	}
	if *useTLS {
		opts = append(opts, tfner.WithTLS(&tls.Config{}))
	}
	client, err := tfner.NewNerClient(*server, *model, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "tfner-client:", err)
		return 2
	}
	defer client.Close()

	if *bench != "" {
		return runBench(client, *bench, *concurrency, *requests, stdout, stderr)
	}
	texts, source := flags.Args(), "text argument"
	if len(texts) == 0 {
		if texts, err = readLines(stdin); err != nil {
			fmt.Fprintln(stderr, "tfner-client: reading stdin:", err)
			return 1
		}
		source = "standard input line"
	}
	// Checked here, not left to Predict: its *InvalidTextError names a slice
	// index, not an argument or a line, and bad input exits 2, not 1 as a
	// refusal does.
	for i, text := range texts {
		if !utf8.ValidString(text) {
			fmt.Fprintf(stderr, "tfner-client: %s %d is not valid UTF-8; "+
				"convert it, e.g. with iconv -f GBK -t UTF-8\n", source, i+1)
			return 2
		}
	}
	results, err := client.Predict(context.Background(), texts)
	if err != nil {
		var serverErr *tfner.Error
		if errors.As(err, &serverErr) {
			fmt.Fprintf(stderr, "tfner-client: %s: %s\n", serverErr.CodeName(), serverErr.Message)
		} else {
			fmt.Fprintln(stderr, "tfner-client:", err)
		}
		return 1
	}
	return printResults(texts, results, stdout, stderr)
}

func printResults(texts []string, results []tfner.Result, stdout, stderr io.Writer) int {
	out := bufio.NewWriter(stdout)
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false) // Print texts as they are, as Python's ensure_ascii=False does.
	for i, result := range results {
		line := lineJSON{Text: texts[i], Entities: make([]entityJSON, len(result.Entities))}
		for k, e := range result.Entities {
			line.Entities[k] = entityJSON{e.Label, e.Start, e.End, e.Text, e.Score, e.ByteStart, e.ByteEnd}
		}
		if err := encoder.Encode(line); err != nil {
			fmt.Fprintln(stderr, "tfner-client:", err)
			return 1
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(stderr, "tfner-client:", err)
		return 1
	}
	return 0
}

// byteOrderMark is U+FEFF in UTF-8.
const byteOrderMark = "\ufeff"

// readLines returns the lines of r without their line endings, and without a
// byte-order mark at the start (Windows editors write one), as the other
// clients read standard input. A line may be of any length (bufio.Scanner
// would stop at its buffer's limit): a text too long for the server is the
// server's to refuse, with the code it gives every client.
func readLines(r io.Reader) ([]string, error) {
	var lines []string
	reader := bufio.NewReader(r)
	// Dropped before reading lines, so that standard input holding only a BOM
	// holds no text, as it does for the other clients.
	if start, _ := reader.Peek(len(byteOrderMark)); string(start) == byteOrderMark {
		reader.Discard(len(byteOrderMark))
	}
	for {
		line, err := reader.ReadString('\n')
		if line != "" { // "" only at the end, after a final line ending.
			lines = append(lines, strings.TrimRight(line, "\r\n"))
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
}
