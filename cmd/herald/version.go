package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is Herald's release, set at build time:
//
//	go build -ldflags "-X main.version=v1.2.0" ./cmd/herald
var version = "dev"

// version prints "herald <version> (commit <rev>, <go version>)".
func (a *app) version(_ context.Context, args []string) int {
	fs, _ := newFlagSet("version")
	u := usage{
		synopsis:    "herald version [flags]",
		description: "Prints Herald's version, the commit it was built from and the Go version that built it.\nThe version is set at build time with -ldflags \"-X main.version=VERSION\".",
		example:     "  herald version",
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	fmt.Fprintln(a.stdout, versionString())
	return exitOK
}

// versionString reads the build information the Go toolchain embeds.
func versionString() string {
	v, commit, goVersion := version, "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		// A "go install herald@v1.2.0" build knows its module version.
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && commit != "unknown" {
			commit += "-dirty"
		}
	}
	return fmt.Sprintf("herald %s (commit %s, %s)", v, commit, goVersion)
}
