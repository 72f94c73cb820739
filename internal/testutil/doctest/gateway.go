package doctest

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/posgate/posgate/internal/config"
)

// Gateway is the gateway configuration a page documents in its yaml block.
type Gateway struct {
	Upstreams map[string]string `yaml:"upstreams"`
	Routes    []config.Route    `yaml:"routes"`
}

// DecodeGateway reads a yaml block as posgate reads a configuration file: an unknown key fails t.
func DecodeGateway(t testing.TB, body string) Gateway {
	t.Helper()
	var gw Gateway
	dec := yaml.NewDecoder(strings.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(&gw); err != nil {
		t.Fatalf("the doc's gateway configuration does not load: %v", err)
	}
	return gw
}

// Apply gives c the page's routes, with every upstream the page names pointing at url (the
// test's upstream).
func (gw Gateway) Apply(c *config.Config, url string) {
	c.Routes = gw.Routes
	c.Upstreams = map[string]string{}
	for name := range gw.Upstreams {
		c.Upstreams[name] = url
	}
}
