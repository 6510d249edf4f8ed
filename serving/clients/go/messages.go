package tfner

// Conversions between Go values and the TF Serving messages of a Predict call.

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tfner/tfner/serving/clients/go/internal/pb/framework"
	"github.com/tfner/tfner/serving/clients/go/internal/pb/serving"
)

// entityOutputs are the signature outputs the client reads; output_filter
// asks for these only, so the per-character `tags` output stays on the server.
var entityOutputs = []string{
	"num_entities",
	"entity_labels",
	"entity_starts",
	"entity_ends",
	"entity_texts",
	"entity_scores",
}

// newPredictRequest builds the PredictRequest for one chunk of texts.
func newPredictRequest(model string, spec *config, texts []string) *serving.PredictRequest {
	values := make([][]byte, len(texts))
	for i, text := range texts {
		values[i] = []byte(text)
	}
	return &serving.PredictRequest{
		ModelSpec: modelSpec(model, spec),
		Inputs: map[string]*framework.TensorProto{
			"text": {
				Dtype:       framework.DataType_DT_STRING,
				TensorShape: &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: int64(len(texts))}}},
				StringVal:   values,
			},
		},
		OutputFilter: entityOutputs,
	}
}

// decodeResponse fills out[i] with the entities of texts[i], from the
// answer of the model named model. Outputs are batch-major and padded to the
// widest row: row i holds num_entities[i] entities, then padding.
func decodeResponse(resp *serving.PredictResponse, model string, texts []string, out []Result) error {
	outputs := resp.GetOutputs()
	for _, name := range entityOutputs {
		if outputs[name] == nil {
			// The model asked for: a response that is not a tfner model's may name none.
			return fmt.Errorf("the response lacks output %q; is %q a tfner model?", name, model)
		}
	}
	n := len(texts)
	counts, countShape, err := int32Tensor("num_entities", outputs["num_entities"])
	if err != nil {
		return err
	}
	if !slices.Equal(countShape, []int{n}) {
		return fmt.Errorf("output \"num_entities\" has shape %v for %d texts", countShape, n)
	}
	labels, shape, err := stringTensor("entity_labels", outputs["entity_labels"])
	if err != nil {
		return err
	}
	if len(shape) != 2 || shape[0] != n {
		return fmt.Errorf("output \"entity_labels\" has shape %v for %d texts", shape, n)
	}
	width := shape[1]
	entityTexts, textShape, err := stringTensor("entity_texts", outputs["entity_texts"])
	if err != nil {
		return err
	}
	starts, startShape, err := int32Tensor("entity_starts", outputs["entity_starts"])
	if err != nil {
		return err
	}
	ends, endShape, err := int32Tensor("entity_ends", outputs["entity_ends"])
	if err != nil {
		return err
	}
	scores, scoreShape, err := float32Tensor("entity_scores", outputs["entity_scores"])
	if err != nil {
		return err
	}
	for _, s := range [][]int{textShape, startShape, endShape, scoreShape} {
		if !slices.Equal(s, shape) {
			return fmt.Errorf("entity outputs disagree on their shape: %v and %v", shape, s)
		}
	}

	version := resp.GetModelSpec().GetVersion().GetValue()
	for row, text := range texts {
		count := int(counts[row])
		if count < 0 || count > width {
			return fmt.Errorf("num_entities[%d] = %d, outside [0, %d]", row, count, width)
		}
		out[row] = Result{ModelVersion: version}
		if count == 0 {
			continue
		}
		offsets := runeOffsets(text)
		entities := make([]Entity, count)
		for i := range entities {
			k := row*width + i
			start, end := int(starts[k]), int(ends[k])
			if start < 0 || start > end || end >= len(offsets) {
				return fmt.Errorf("texts[%d] entity %d spans code points [%d, %d) of a %d-code-point text",
					row, i, start, end, len(offsets)-1)
			}
			entities[i] = Entity{
				Label:     string(labels[k]),
				Text:      string(entityTexts[k]),
				Score:     scores[k],
				Start:     start,
				End:       end,
				ByteStart: offsets[start],
				ByteEnd:   offsets[end],
			}
		}
		out[row].Entities = entities
	}
	return nil
}

// modelSpec names the model and the version or label the client is pinned to.
func modelSpec(model string, c *config) *serving.ModelSpec {
	spec := &serving.ModelSpec{Name: model, SignatureName: "serving_default"}
	switch {
	case c.hasVersion:
		spec.VersionChoice = &serving.ModelSpec_Version{Version: wrapperspb.Int64(c.version)}
	case c.label != "":
		spec.VersionChoice = &serving.ModelSpec_VersionLabel{VersionLabel: c.label}
	}
	return spec
}
