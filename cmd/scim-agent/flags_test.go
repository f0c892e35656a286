package main

import (
	"slices"
	"strings"
	"testing"
)

func TestUIDFlag(t *testing.T) {
	tests := []struct {
		args    []string
		want    []uint32
		wantErr string
	}{
		{[]string{"12"}, []uint32{12}, ""},
		{[]string{"12", "13"}, []uint32{12, 13}, ""},
		{[]string{"12,13"}, []uint32{12, 13}, ""},
		{[]string{"12, 13"}, []uint32{12, 13}, ""},
		{[]string{"4294967295"}, []uint32{4294967295}, ""},
		{[]string{"12x"}, nil, `"12x" is not a uid`},
		{[]string{"12,"}, nil, `"" is not a uid`},
		{[]string{"-1"}, nil, `"-1" is not a uid`},
		{[]string{"4294967296"}, nil, `"4294967296" is not a uid`},
	}
	for _, tt := range tests {
		var l uintList
		var err error
		for _, a := range tt.args {
			if err = l.Set(a); err != nil {
				break
			}
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("--uid %v: error %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(l, tt.want) {
			t.Errorf("--uid %v = %v, %v; want %v", tt.args, l, err, tt.want)
		}
	}
}
