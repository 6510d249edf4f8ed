package tfner

import (
	"cmp"
	"context"
	"slices"

	"google.golang.org/grpc/codes"

	"github.com/tfner/tfner/serving/clients/go/internal/pb/serving"
)

// VersionState is the life-cycle state of one model version on the server.
type VersionState string

// The states of TF Serving's ModelVersionStatus; only Available serves.
const (
	StateUnknown   VersionState = "UNKNOWN"
	StateStart     VersionState = "START"
	StateLoading   VersionState = "LOADING"
	StateAvailable VersionState = "AVAILABLE"
	StateUnloading VersionState = "UNLOADING"
	StateEnd       VersionState = "END"
)

// VersionStatus is one version of the model as the server reports it.
type VersionStatus struct {
	Version int64
	State   VersionState
	// ErrorCode and ErrorMessage say why a version failed to load or
	// stopped; codes.OK otherwise.
	ErrorCode    codes.Code
	ErrorMessage string
}

// Status lists the versions of the client's model that the server knows,
// in increasing version order (ModelService.GetModelStatus). It reports
// every version, whatever version or label the client is pinned to.
func (c *NerClient) Status(ctx context.Context) ([]VersionStatus, error) {
	request := &serving.GetModelStatusRequest{ModelSpec: &serving.ModelSpec{Name: c.model}}
	var response *serving.GetModelStatusResponse
	err := c.withRetries(ctx, func(ctx context.Context) error {
		var err error
		response, err = c.models.GetModelStatus(ctx, request)
		return err
	})
	if err != nil {
		return nil, err
	}
	versions := make([]VersionStatus, 0, len(response.GetModelVersionStatus()))
	for _, v := range response.GetModelVersionStatus() {
		versions = append(versions, VersionStatus{
			Version:      v.GetVersion(),
			State:        VersionState(v.GetState().String()),
			ErrorCode:    codes.Code(v.GetStatus().GetErrorCode()),
			ErrorMessage: v.GetStatus().GetErrorMessage(),
		})
	}
	slices.SortFunc(versions, func(a, b VersionStatus) int { return cmp.Compare(a.Version, b.Version) })
	return versions, nil
}
