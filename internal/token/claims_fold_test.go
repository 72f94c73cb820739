package token

import "testing"

// An Extra claim that folds onto a registered name the way encoding/json matches keys (long s
// U+017F folds to 's') must be refused at issue time: the verifier's duplicate-key check would
// refuse the token anyway, so issuing it would mint a token that never verifies.
func TestCheckExtraFoldsLikeJSON(t *testing.T) {
	for _, k := range []string{"SUB", "ſub", "ſcope", "Client_ID"} {
		if err := checkExtra(map[string]any{k: "x"}); err == nil {
			t.Errorf("checkExtra accepted %q", k)
		}
	}
	if err := checkExtra(map[string]any{"ſ": 1, "s": 2}); err == nil {
		t.Error("checkExtra accepted two claims that fold to one key")
	}
	if err := checkExtra(map[string]any{"amount": 1, "notificationKey": "n"}); err != nil {
		t.Errorf("checkExtra refused ordinary claims: %v", err)
	}
}
