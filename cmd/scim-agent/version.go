package main

import (
	"context"
	"fmt"
	"io"

	"github.com/scim-agent/scim-agent/internal/buildinfo"
)

func versionCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", "scim-agent version", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	i := buildinfo.Read()
	fmt.Fprintf(stdout, "scim-agent %s\n", i.Version)
	if i.Revision != "" {
		fmt.Fprintf(stdout, "revision   %s (%s)\n", i.Revision, i.Time)
	}
	fmt.Fprintf(stdout, "go         %s\n", i.GoVersion)
	return nil
}
