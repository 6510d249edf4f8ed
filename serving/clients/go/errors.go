package tfner

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tfner/tfner/serving/clients/go/internal/pb/tsl"
)

// Kind is the class of a failed call, after its gRPC status code.
type Kind int

const (
	// KindOther is any status without a class of its own (INTERNAL,
	// UNIMPLEMENTED, CANCELLED, ...); Error.Code tells which.
	KindOther Kind = iota
	// KindNotFound: no such model, version or label on the server.
	KindNotFound
	// KindInvalidArgument: the server refused the request, e.g. more texts
	// in one call than its --max_texts_per_request (lower WithChunkSize).
	KindInvalidArgument
	// KindResourceExhausted: the call holds more characters than the
	// server's --max_chars_per_request; send less at once.
	KindResourceExhausted
	// KindUnavailable: no server answered, or its batch queue stayed full
	// (TF Serving's code for a full queue), through every retry.
	KindUnavailable
	// KindDeadlineExceeded: the call outlived its deadline (WithTimeout, or
	// the caller's context).
	KindDeadlineExceeded
)

// Sentinels for errors.Is: errors.Is(err, tfner.ErrNotFound) holds for an
// *Error of KindNotFound, and so on.
var (
	ErrNotFound          = errors.New("tfner: not found")
	ErrInvalidArgument   = errors.New("tfner: invalid argument")
	ErrResourceExhausted = errors.New("tfner: resource exhausted")
	ErrUnavailable       = errors.New("tfner: unavailable")
	ErrDeadlineExceeded  = errors.New("tfner: deadline exceeded")
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "NotFound"
	case KindInvalidArgument:
		return "InvalidArgument"
	case KindResourceExhausted:
		return "ResourceExhausted"
	case KindUnavailable:
		return "Unavailable"
	case KindDeadlineExceeded:
		return "DeadlineExceeded"
	}
	return "Other"
}

func (k Kind) sentinel() error {
	switch k {
	case KindNotFound:
		return ErrNotFound
	case KindInvalidArgument:
		return ErrInvalidArgument
	case KindResourceExhausted:
		return ErrResourceExhausted
	case KindUnavailable:
		return ErrUnavailable
	case KindDeadlineExceeded:
		return ErrDeadlineExceeded
	}
	return nil
}

func kindOf(code codes.Code) Kind {
	switch code {
	case codes.NotFound:
		return KindNotFound
	case codes.InvalidArgument:
		return KindInvalidArgument
	case codes.ResourceExhausted:
		return KindResourceExhausted
	case codes.Unavailable:
		return KindUnavailable
	case codes.DeadlineExceeded:
		return KindDeadlineExceeded
	}
	return KindOther
}

// Error is a call that failed with a gRPC status.
type Error struct {
	// Kind is the class of Code.
	Kind Kind
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message: the server's own words for a status it
	// sent, gRPC's for one raised on the client (no connection, deadline).
	Message string
	// Attempts is how many times the call was sent (1 + retries used).
	Attempts int
	cause    error
}

// CodeName is the status code's canonical name, e.g. "NOT_FOUND", as TF
// Serving and the Python client print it.
func (e *Error) CodeName() string {
	// tensorflow.error.Code numbers its values as gRPC's status codes do.
	return tsl.Code(e.Code).String()
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("tfner: %s: %s", e.CodeName(), e.Message)
	if e.Attempts > 1 {
		msg += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return msg
}

// Is reports whether target is the sentinel of e's Kind.
func (e *Error) Is(target error) bool {
	s := e.Kind.sentinel()
	return s != nil && target == s
}

// Unwrap returns the gRPC status error, for status.FromError and
// status.Code.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus returns the call's gRPC status.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// newError wraps the error of a gRPC call (or of its context) into an *Error.
func newError(err error, attempts int) *Error {
	s, ok := status.FromError(err)
	if !ok {
		// Not a status: the call's context ended before or between attempts.
		s = status.FromContextError(err)
	}
	return &Error{Kind: kindOf(s.Code()), Code: s.Code(), Message: s.Message(), Attempts: attempts, cause: err}
}

// contextError is the *Error for a context that ended outside any call.
func contextError(ctx context.Context, attempts int) *Error {
	return newError(ctx.Err(), attempts)
}

// InvalidTextError is a text that is not valid UTF-8: the server reads texts
// as UTF-8 and offsets are counted in code points, so such a text has no
// well-defined answer. Predict returns it before sending anything.
type InvalidTextError struct {
	// Index is the text's position in the slice passed to Predict.
	Index int
	// Offset is the byte offset of the first invalid byte.
	Offset int
}

func (e *InvalidTextError) Error() string {
	return fmt.Sprintf("tfner: texts[%d] is not valid UTF-8 (invalid byte at offset %d); "+
		"decode it from its real encoding, or use strings.ToValidUTF8, before calling Predict", e.Index, e.Offset)
}

// Is makes errors.Is(err, ErrInvalidArgument) hold, as for the server's own
// INVALID_ARGUMENT.
func (e *InvalidTextError) Is(target error) bool { return target == ErrInvalidArgument }
