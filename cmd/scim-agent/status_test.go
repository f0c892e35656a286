package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/binlog"
)

func TestPrintStatusPosition(t *testing.T) {
	tests := []struct {
		name, position, want string
	}{
		{"no position saved yet", (binlog.Position{}).String(), "none (the first start will sync every user)"},
		{"empty", "", "none (the first start will sync every user)"},
		{"saved", "mariadb-bin.000002:4711", "mariadb-bin.000002:4711"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			printStatus(&out, agent.Status{Position: tt.position})
			if !strings.Contains(out.String(), "position             "+tt.want+"\n") {
				t.Fatalf("status:\n%s\nwant the position row to say %q", out.String(), tt.want)
			}
		})
	}
}
