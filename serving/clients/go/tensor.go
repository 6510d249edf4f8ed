package tfner

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tfner/tfner/serving/clients/go/internal/pb/framework"
)

// Senders may write numbers either packed little-endian in tensor_content
// (what TF Serving and tfner.serve do) or in the typed *_val fields; these
// readers accept both, as TensorFlow's own MakeNdarray does.

// stringTensor returns a DT_STRING tensor's values and shape.
func stringTensor(name string, t *framework.TensorProto) ([][]byte, []int, error) {
	shape, count, err := tensorShape(name, t, framework.DataType_DT_STRING)
	if err != nil {
		return nil, nil, err
	}
	if len(t.GetStringVal()) != count {
		return nil, nil, fmt.Errorf("output %q has %d strings for shape %v", name, len(t.GetStringVal()), shape)
	}
	return t.GetStringVal(), shape, nil
}

// int32Tensor returns a DT_INT32 tensor's values and shape.
func int32Tensor(name string, t *framework.TensorProto) ([]int32, []int, error) {
	shape, count, err := tensorShape(name, t, framework.DataType_DT_INT32)
	if err != nil {
		return nil, nil, err
	}
	values, err := numericValues(name, t.GetTensorContent(), t.GetIntVal(), count, 4,
		func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	return values, shape, err
}

// float32Tensor returns a DT_FLOAT tensor's values and shape.
func float32Tensor(name string, t *framework.TensorProto) ([]float32, []int, error) {
	shape, count, err := tensorShape(name, t, framework.DataType_DT_FLOAT)
	if err != nil {
		return nil, nil, err
	}
	values, err := numericValues(name, t.GetTensorContent(), t.GetFloatVal(), count, 4,
		func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	return values, shape, err
}

// tensorShape checks t's dtype and returns its shape and element count.
func tensorShape(name string, t *framework.TensorProto, want framework.DataType) ([]int, int, error) {
	if t.GetDtype() != want {
		return nil, 0, fmt.Errorf("output %q has dtype %v, want %v", name, t.GetDtype(), want)
	}
	dims := t.GetTensorShape().GetDim()
	shape := make([]int, len(dims))
	count := 1
	for i, d := range dims {
		if d.GetSize() < 0 || d.GetSize() > math.MaxInt32 {
			return nil, 0, fmt.Errorf("output %q has dimension %d of size %d", name, i, d.GetSize())
		}
		shape[i] = int(d.GetSize())
		count *= shape[i]
	}
	return shape, count, nil
}

// numericValues reads count values from packed content or from the typed
// field, where a repeated last value may be elided (TensorFlow fills it in).
func numericValues[T any](name string, content []byte, typed []T, count, size int, decode func([]byte) T) ([]T, error) {
	if len(content) > 0 {
		if len(content) != count*size {
			return nil, fmt.Errorf("output %q has %d bytes of tensor_content for %d values", name, len(content), count)
		}
		values := make([]T, count)
		for i := range values {
			values[i] = decode(content[i*size:])
		}
		return values, nil
	}
	switch {
	case len(typed) == count:
		return typed, nil
	case len(typed) > 0 && len(typed) < count:
		values := make([]T, count)
		copy(values, typed)
		for i := len(typed); i < count; i++ {
			values[i] = typed[len(typed)-1]
		}
		return values, nil
	}
	return nil, fmt.Errorf("output %q has %d values for %d elements", name, len(typed), count)
}
