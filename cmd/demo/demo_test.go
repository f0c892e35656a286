package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestUnattendedDemo runs the README's first command exactly as an
// operator would, unattended: `DEMO_UNATTENDED=1 make demo` must build the
// agent, show every scripted change arriving and exit 0.
func TestUnattendedDemo(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed; the README's commands need it")
	}
	cmd := exec.Command("make", "-C", "../..", "demo")
	cmd.Env = append(os.Environ(), "DEMO_UNATTENDED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("DEMO_UNATTENDED=1 make demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		`create userName="erin"`,
		`create displayName="Editors" members=[`,
		"add members=[erin]",
		"replace displayName=Content editors",
		`group "Content editors"  members alice, carol, erin`,
		`replace emails[type eq "work"].value=robert@example.org`,
		"(no request reached the SCIM server)",
		"replace active=false",
		"DELETE /Users/",
		"The SCIM server matches the Drupal database",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if entries, _ := os.ReadDir(os.TempDir()); len(entries) > 0 {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "scim-agent-demo-") {
				t.Errorf("demo left %s behind", e.Name())
			}
		}
	}
}
