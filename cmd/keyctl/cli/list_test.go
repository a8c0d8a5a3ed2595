package cli

import (
	"fmt"
	"strings"
	"testing"
)

// TestKeyListPages: against a real node, "key list --limit N" prints one
// page in name order and the command for the next; following it lists
// the rest with none missed or repeated; "key list" alone lists every key
// (the client follows the pages); a limit out of range is a usage error.
func TestKeyListPages(t *testing.T) {
	initOneNode(t)
	var want []string
	for _, name := range []string{"b", "a/1", "c", "a/2", "d"} {
		if code, _, errb := keyctl(t, "key", "create", name, "--bytes", "16"); code != ExitOK {
			t.Fatalf("key create %s: exit %d, %s", name, code, errb)
		}
	}
	want = []string{"a/1", "a/2", "b", "c", "d"}

	names := func(out string) (got []string, more string) {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			if m, ok := strings.CutPrefix(line, "more: "); ok {
				more = m
				continue
			}
			got = append(got, strings.Fields(line)[0])
		}
		return got, more
	}
	var paged []string
	args := []string{"key", "list", "--limit", "2"}
	for pages := 0; ; pages++ {
		if pages == 5 {
			t.Fatalf("more than 3 pages of 2 for 5 keys: %v", paged)
		}
		code, out, errb := keyctl(t, args...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d, %s", args, code, errb)
		}
		got, more := names(out)
		if len(got) > 2 {
			t.Fatalf("%v printed %d keys", args, len(got))
		}
		paged = append(paged, got...)
		if more == "" {
			break
		}
		args = strings.Fields(strings.TrimPrefix(more, "keyctl "))
	}
	if fmt.Sprint(paged) != fmt.Sprint(want) {
		t.Errorf("following the pages listed %v, want %v", paged, want)
	}
	code, out, errb := keyctl(t, "key", "list")
	if got, more := names(out); code != ExitOK || fmt.Sprint(got) != fmt.Sprint(want) || more != "" {
		t.Errorf("key list: exit %d, %v %q (%s), want %v and no more", code, got, more, errb, want)
	}
	code, out, _ = keyctl(t, "key", "list", "--after", "b")
	if got, _ := names(out); code != ExitOK || fmt.Sprint(got) != "[c d]" {
		t.Errorf("key list --after b: exit %d, %v, want [c d]", code, got)
	}
	for _, bad := range []string{"-1", "1001"} {
		if code, _, errb := keyctl(t, "key", "list", "--limit", bad); code != ExitUsage || !strings.Contains(errb, "--limit") {
			t.Errorf("--limit %s: exit %d, %q: want a usage error naming --limit", bad, code, errb)
		}
	}
}
