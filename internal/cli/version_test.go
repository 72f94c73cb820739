package cli

import (
	"runtime/debug"
	"testing"
)

func TestDescribeVersion(t *testing.T) {
	info := func(main string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: main}, Settings: settings}, true
		}
	}
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "3f2a9c1b0d4e5f60718293a4b5c6d7e8f9012345"},
		{Key: "vcs.time", Value: "2026-12-01T09:30:00Z"}, {Key: "vcs.modified", Value: "false"}}
	for _, c := range []struct {
		name, stamped string
		read          func() (*debug.BuildInfo, bool)
		want          string
	}{
		{"stamped with vcs", "v1.0.0", info("(devel)", vcs...), "v1.0.0 3f2a9c1b0d4e 2026-12-01T09:30:00Z go1.26.0"},
		{"checkout", "", info("(devel)", vcs...), "(devel) 3f2a9c1b0d4e 2026-12-01T09:30:00Z go1.26.0"},
		{"dirty", "", info("", append(vcs[:2:2], debug.BuildSetting{Key: "vcs.modified", Value: "true"})...), "(devel) 3f2a9c1b0d4e+dirty 2026-12-01T09:30:00Z go1.26.0"},
		{"go install", "", info("v1.2.3"), "v1.2.3 go1.26.0"},
		{"stamped, no build info", "v1.0.0", func() (*debug.BuildInfo, bool) { return nil, false }, "v1.0.0"},
	} {
		if got := describeVersion(c.stamped, c.read); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
