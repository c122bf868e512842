package validate

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestMalformedInputClassesAreDocumented keeps docs/malformed-input.md and
// the table tests in step: every class the tables use is documented, and
// every documented class has at least one refused case.
func TestMalformedInputClassesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/malformed-input.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\|").FindAllSubmatch(doc, -1) {
		documented = append(documented, string(m[1]))
	}
	used := map[string]bool{}
	for _, c := range podCases() {
		used[c.class] = c.want != nil || used[c.class]
	}
	for _, c := range containerCases() {
		used[c.class] = c.want != nil || used[c.class]
	}
	for _, c := range otherCallCases() {
		used[c.class] = c.want != nil || used[c.class]
	}
	delete(used, "") // accepted cases
	for class := range used {
		if !slices.Contains(documented, class) {
			t.Errorf("class %q is used by the tests but not in docs/malformed-input.md", class)
		}
	}
	for _, class := range documented {
		if !used[class] {
			t.Errorf("class %q is documented but no table case refuses it", class)
		}
	}
	if len(documented) < 15 {
		t.Errorf("found only %d classes in the doc", len(documented))
	}
}
