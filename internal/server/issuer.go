package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// errIssuerRequired is the refusal to derive the issuer from a listen address on a shared store.
var errIssuerRequired = errors.New("server.issuer: must be set with store.driver postgres: every replica must mint and accept the same issuer, " +
	"the public URL clients reach posgate at (e.g. https://auth.example.com); a replica cannot derive it from its own listen address")

// sharedStore reports whether replicas share a store of this driver: then they must share one
// issuer too, which the store records.
func sharedStore(driver string) bool { return driver == "postgres" }

// checkIssuer refuses issuer, early in a start, when the store records another one that
// server.previous_issuer does not name; it writes nothing. The issuer is recorded (or moved) by
// agreeIssuer only once the start can no longer fail: a first start that fails after this check
// (a bad admin token, a module refusing its configuration) must not leave its issuer recorded, or
// the operator who fixes a typo in server.issuer with the rest would be refused.
func checkIssuer(ctx context.Context, st store.Settings, issuer, previous string) error {
	recorded, err := st.Setting(ctx, store.SettingIssuer)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server.issuer: reading the deployment's issuer from the store: %w", err)
	}
	if recorded == issuer || (previous != "" && recorded == previous) {
		return nil
	}
	return refuseIssuer(issuer, recorded, previous)
}

// agreeIssuer makes issuer the deployment's, or refuses. The first replica to start records it in
// the store; a replica configured with another one would mint tokens every other replica refuses
// (and publish RFC 8414 metadata naming another issuer), so it must not start. previous (server.
// previous_issuer) moves the recorded issuer to issuer on purpose: the swap is a conditional
// update, so of replicas starting together with the same pair one swaps and the others find the
// new issuer already recorded. moved reports that this call moved it.
func agreeIssuer(ctx context.Context, st store.Settings, issuer, previous string, now time.Time) (moved bool, err error) {
	recorded, err := st.InitSetting(ctx, store.SettingIssuer, issuer, now)
	if err != nil {
		return false, fmt.Errorf("server.issuer: reading the deployment's issuer from the store: %w", err)
	}
	if recorded == issuer {
		return false, nil
	}
	if previous != "" && recorded == previous {
		err := st.SwapSetting(ctx, store.SettingIssuer, previous, issuer, now)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return false, fmt.Errorf("server.issuer: recording the new issuer in the store: %w", err)
		}
		// Another replica swapped first; read what it recorded.
		if recorded, err = st.InitSetting(ctx, store.SettingIssuer, issuer, now); err != nil {
			return false, fmt.Errorf("server.issuer: reading the deployment's issuer from the store: %w", err)
		}
		if recorded == issuer {
			return false, nil
		}
	}
	return false, refuseIssuer(issuer, recorded, previous)
}

// refuseIssuer is the refusal of a replica configured with issuer when the store records another.
func refuseIssuer(issuer, recorded, previous string) error {
	msg := fmt.Sprintf("server.issuer: %q is not this deployment's issuer: the store records %q, and every replica must mint and accept the same one. "+
		"Set server.issuer (POSGATE_SERVER_ISSUER) to %q; or, to move the whole deployment to %q on purpose, also set server.previous_issuer (POSGATE_SERVER_PREVIOUS_ISSUER) to %q "+
		"(tokens minted under the old issuer are refused from then on)", issuer, recorded, recorded, issuer, recorded)
	if previous != "" {
		msg += fmt.Sprintf("; server.previous_issuer is %q, which is not the recorded issuer", previous)
	}
	return errors.New(msg)
}
