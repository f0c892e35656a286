package drupal

import "testing"

func TestShareClause(t *testing.T) {
	tests := []struct{ version, want string }{
		{"10.11.19-MariaDB-0+deb12u1", " LOCK IN SHARE MODE NOWAIT"},
		{"5.5.5-10.6.4-MariaDB", " LOCK IN SHARE MODE NOWAIT"},
		{"8.0.36", " FOR SHARE NOWAIT"},
		{"8.4.0-commercial", " FOR SHARE NOWAIT"},
		{"5.7.44-log", " LOCK IN SHARE MODE"},
	}
	for _, tt := range tests {
		if got := shareClause(tt.version); got != tt.want {
			t.Errorf("shareClause(%q) = %q, want %q", tt.version, got, tt.want)
		}
	}
}
