// Package buildinfo tells which build of scim-agent is running, from the
// module version and VCS stamps Go writes into every binary.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Info describes the running binary.
type Info struct {
	// Version is the module version ("v1.2.3", or "(devel)" for a build
	// from a checkout).
	Version string
	// Revision is the VCS commit the binary was built from, with
	// "+dirty" when the work tree had uncommitted changes.
	Revision string
	// Time is the commit time (RFC 3339).
	Time string
	// GoVersion is the toolchain that built it.
	GoVersion string
}

// Read returns the binary's build information.
func Read() Info {
	info := Info{Version: "(unknown)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Version = bi.Main.Version
	info.GoVersion = bi.GoVersion
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && info.Revision != "" {
		info.Revision += "+dirty"
	}
	return info
}

// Short is a one-word version for User-Agent headers and logs: the
// module version, or the first 12 characters of the revision for a
// development build.
func (i Info) Short() string {
	if i.Version != "" && i.Version != "(devel)" && i.Version != "(unknown)" {
		return i.Version
	}
	if i.Revision != "" {
		r, dirty := strings.CutSuffix(i.Revision, "+dirty")
		if len(r) > 12 {
			r = r[:12]
		}
		if dirty {
			r += "+dirty"
		}
		return r
	}
	return "devel"
}
