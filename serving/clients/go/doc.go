// Package tfner is a Go client for tfner's named-entity recognition models
// served by TensorFlow Serving or tfner's own server (python -m tfner.serve).
//
// It calls the stock TF Serving gRPC API (PredictionService.Predict and
// ModelService.GetModelStatus) with stubs generated from TF Serving's own
// descriptors, so it works against either server unchanged:
//
//	client, err := tfner.NewNerClient("localhost:8500", "ner", tfner.WithLabel("stable"))
//	if err != nil { ... }
//	defer client.Close()
//	texts := []string{"北京欢迎你", "他从上海来"}
//	results, err := client.Predict(ctx, texts)
//	for i, r := range results {
//		for _, e := range r.Entities {
//			fmt.Println(e.Label, e.Text, e.Score, texts[i][e.ByteStart:e.ByteEnd])
//		}
//	}
//
// # Offsets
//
// The server counts Unicode code points (Entity.Start, Entity.End, end
// exclusive). Go strings are indexed by byte, so each entity also carries
// Entity.ByteStart and Entity.ByteEnd, and text[e.ByteStart:e.ByteEnd] ==
// e.Text for every input, emoji and combining marks included. Texts must be
// valid UTF-8: Predict refuses any other text with an *InvalidTextError
// before calling the server.
//
// # Errors
//
// A call the server refuses returns an *Error whose Kind names the gRPC
// status class and whose Message is the server's own message; match it with
// errors.Is (tfner.ErrNotFound, ErrInvalidArgument, ErrResourceExhausted,
// ErrUnavailable, ErrDeadlineExceeded) or errors.As.
//
// A NerClient is safe for concurrent use by many goroutines; it holds one
// gRPC channel, which Close releases.
package tfner
