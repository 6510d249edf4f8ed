package tfner

// Entity is one entity span of one text.
type Entity struct {
	// Label is the entity type, e.g. "LOC" or "ORG".
	Label string
	// Text is the span's text, as the server returned it.
	Text string
	// Score is the model's confidence in [0, 1]: the lowest per-character
	// tag probability of the span (see export/README.md).
	Score float32
	// Start and End are Unicode code-point offsets (End exclusive), as the
	// server sends them: the indices of a Python str or a []rune.
	Start, End int
	// ByteStart and ByteEnd are the same span as byte offsets into the
	// caller's Go string: text[ByteStart:ByteEnd] == Text.
	ByteStart, ByteEnd int
}

// Result is what the model found in one text.
type Result struct {
	// Entities in the order of the text; empty when there are none.
	Entities []Entity
	// ModelVersion is the model version that answered (the response's
	// model_spec.version), or 0 if the server did not say.
	ModelVersion int64
}
