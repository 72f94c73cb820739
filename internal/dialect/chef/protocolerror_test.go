package chef

import (
	"testing"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/jsonrpc"
)

// TestProtocolErrorStatuses: the gateway's body refusals on chef.device routes answer 413 and 415
// with a -32600 body, as the chef endpoint itself does — not 500.
func TestProtocolErrorStatuses(t *testing.T) {
	for _, c := range []struct {
		kind   errs.Kind
		status int
		code   int
	}{
		{errs.TooLarge, 413, jsonrpc.CodeInvalidRequest},
		{errs.UnsupportedMediaType, 415, jsonrpc.CodeInvalidRequest},
		{errs.BadInput, 200, jsonrpc.CodeInvalidRequest},
		{errs.Internal, 500, jsonrpc.CodeInternalError},
	} {
		st, e := protocolError(errs.New(c.kind, "x", "refused"))
		if st != c.status || e.Code != c.code {
			t.Errorf("%v: %d %d, want %d %d", c.kind, st, e.Code, c.status, c.code)
		}
	}
}
