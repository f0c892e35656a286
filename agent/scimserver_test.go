package agent

import "testing"

func TestValueFilterLearning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []string // "taken", "refused", "noTarget"
		want    bool     // value filters still used
	}{
		{"unknown server", nil, true},
		{"taken", []string{"taken", "taken"}, true},
		{"refused once", []string{"taken", "refused"}, false},
		{"one account without a work address", []string{"noTarget"}, true},
		{"noTargets between successes", []string{"noTarget", "noTarget", "taken", "noTarget", "noTarget", "taken"}, true},
		{"noTarget after noTarget", []string{"noTarget", "noTarget", "noTarget"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scimServer{}
			learnt := 0
			for _, a := range tc.answers {
				switch a {
				case "taken":
					s.valueFilterTaken()
				case "refused", "noTarget":
					if s.valueFilterRefused(a == "noTarget") {
						learnt++
					}
				}
			}
			if got := s.valueFilters(); got != tc.want {
				t.Fatalf("valueFilters() = %v after %v, want %v", got, tc.answers, tc.want)
			}
			if learnt > 1 || tc.want == (learnt == 1) {
				t.Fatalf("learnt %d times", learnt)
			}
			if !tc.want && s.valueFilterRefused(false) {
				t.Fatal("learnt again")
			}
		})
	}
}
