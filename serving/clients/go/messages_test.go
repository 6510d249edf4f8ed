package tfner

// Unit tests of the pure conversions; everything that talks to a server is
// tested against a real one in the _test package.

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tfner/tfner/serving/clients/go/internal/pb/framework"
	"github.com/tfner/tfner/serving/clients/go/internal/pb/serving"
)

func shapeOf(dims ...int64) *framework.TensorShapeProto {
	shape := &framework.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &framework.TensorShapeProto_Dim{Size: d})
	}
	return shape
}

func packedInt32(values ...int32) []byte {
	out := make([]byte, 0, 4*len(values))
	for _, v := range values {
		out = binary.LittleEndian.AppendUint32(out, uint32(v))
	}
	return out
}

func packedFloat32(values ...float32) []byte {
	out := make([]byte, 0, 4*len(values))
	for _, v := range values {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	return out
}

func strs(values ...string) [][]byte {
	out := make([][]byte, len(values))
	for i, v := range values {
		out[i] = []byte(v)
	}
	return out
}

// response builds the answer for texts "😀北京 e\u0301张三" and "" in
// either number encoding: row 0 has two entities, row 1 none (padding).
func response(packed bool) *serving.PredictResponse {
	str := func(values ...string) *framework.TensorProto {
		return &framework.TensorProto{Dtype: framework.DataType_DT_STRING, TensorShape: shapeOf(2, 2), StringVal: strs(values...)}
	}
	ints := func(dims []int64, values ...int32) *framework.TensorProto {
		t := &framework.TensorProto{Dtype: framework.DataType_DT_INT32, TensorShape: shapeOf(dims...)}
		if packed {
			t.TensorContent = packedInt32(values...)
		} else {
			t.IntVal = values
		}
		return t
	}
	scores := &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shapeOf(2, 2)}
	if packed {
		scores.TensorContent = packedFloat32(0.5, 0.25, 0, 0)
	} else {
		scores.FloatVal = []float32{0.5, 0.25, 0} // The last value repeats: elided.
	}
	return &serving.PredictResponse{
		ModelSpec: &serving.ModelSpec{Name: "ner", VersionChoice: &serving.ModelSpec_Version{Version: wrapperspb.Int64(2)}},
		Outputs: map[string]*framework.TensorProto{
			"num_entities":  ints([]int64{2}, 2, 0),
			"entity_labels": str("LOC", "PER", "", ""),
			"entity_texts":  str("北京", "e\u0301张", "", ""),
			"entity_starts": ints([]int64{2, 2}, 1, 4, -1, -1),
			"entity_ends":   ints([]int64{2, 2}, 3, 7, -1, -1),
			"entity_scores": scores,
		},
	}
}

func TestDecodeResponseReadsBothNumberEncodings(t *testing.T) {
	texts := []string{"😀北京 e\u0301张三", ""}
	want := []Result{
		{ModelVersion: 2, Entities: []Entity{
			{Label: "LOC", Text: "北京", Score: 0.5, Start: 1, End: 3, ByteStart: 4, ByteEnd: 10},
			{Label: "PER", Text: "e\u0301张", Score: 0.25, Start: 4, End: 7, ByteStart: 11, ByteEnd: 17},
		}},
		{ModelVersion: 2},
	}
	for _, packed := range []bool{true, false} {
		got := make([]Result, len(texts))
		if err := decodeResponse(response(packed), "ner", texts, got); err != nil {
			t.Fatalf("packed=%v: %v", packed, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("packed=%v:\n got %+v\nwant %+v", packed, got, want)
		}
		for _, e := range got[0].Entities {
			if texts[0][e.ByteStart:e.ByteEnd] != e.Text {
				t.Errorf("byte offsets of %q slice %q", e.Text, texts[0][e.ByteStart:e.ByteEnd])
			}
		}
	}
}

func TestDecodeResponseRefusesMalformedOutputs(t *testing.T) {
	for name, breakIt := range map[string]func(*serving.PredictResponse){
		"missing output": func(r *serving.PredictResponse) { delete(r.Outputs, "entity_scores") },
		"wrong dtype":    func(r *serving.PredictResponse) { r.Outputs["entity_starts"].Dtype = framework.DataType_DT_INT64 },
		"short content":  func(r *serving.PredictResponse) { r.Outputs["entity_ends"].TensorContent = packedInt32(1) },
		"count too big":  func(r *serving.PredictResponse) { r.Outputs["num_entities"].TensorContent = packedInt32(3, 0) },
		"end past text":  func(r *serving.PredictResponse) { r.Outputs["entity_ends"].TensorContent = packedInt32(3, 99, -1, -1) },
		"shape mismatch": func(r *serving.PredictResponse) { r.Outputs["entity_texts"].TensorShape = shapeOf(2, 1) },
		"rows != texts":  func(r *serving.PredictResponse) { r.Outputs["num_entities"].TensorShape = shapeOf(1) },
	} {
		r := response(true)
		breakIt(r)
		if err := decodeResponse(r, "ner", []string{"😀北京 e\u0301张三", ""}, make([]Result, 2)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

func TestValidateTexts(t *testing.T) {
	for _, tc := range []struct {
		texts         []string
		index, offset int // index -1: valid.
	}{
		{[]string{"", "北京", "😀e\u0301", "\uFFFD"}, -1, 0},
		{[]string{"ok", "北\xff"}, 1, 3},
		{[]string{"\xe4\xb8"}, 0, 0},             // Truncated sequence.
		{[]string{"a\xed\xa0\x80"}, 0, 1},        // A UTF-16 surrogate encoded in UTF-8.
		{[]string{"好", "好", "x\xc0\xafy"}, 2, 1}, // Overlong encoding.
	} {
		err := validateTexts(tc.texts)
		if tc.index < 0 {
			if err != nil {
				t.Errorf("validateTexts(%q) = %v, want nil", tc.texts, err)
			}
			continue
		}
		e, ok := err.(*InvalidTextError)
		if !ok || e.Index != tc.index || e.Offset != tc.offset {
			t.Errorf("validateTexts(%q) = %v, want texts[%d] at byte %d", tc.texts, err, tc.index, tc.offset)
		}
	}
}

func TestBackoffStaysInItsWindow(t *testing.T) {
	c := &NerClient{cfg: defaultConfig()}
	c.cfg.baseBackoff, c.cfg.maxBackoff = 10*time.Millisecond, 35*time.Millisecond
	for attempt, window := range []time.Duration{10, 20, 35, 35, 35} {
		for range 100 {
			if d := c.backoff(attempt); d < 0 || d >= window*time.Millisecond {
				t.Fatalf("backoff(%d) = %v, outside [0, %v)", attempt, d, window*time.Millisecond)
			}
		}
	}
	if d := c.backoff(200); d < 0 || d >= c.cfg.maxBackoff {
		t.Errorf("backoff(200) = %v, outside [0, max)", d)
	}
}
