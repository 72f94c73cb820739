package server_test

import (
	"golang.org/x/oauth2"

	"github.com/posgate/posgate/internal/token"
)

var oauth2HTTPClient = oauth2.HTTPClient

func authStyle(n int) oauth2.AuthStyle {
	if n == 1 {
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleInParams
}

func tokenOpts() token.VerifyOptions { return token.VerifyOptions{} }
