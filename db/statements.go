package db

import (
	"bufio"
	"fmt"
	"io/fs"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/crisp-cri/crisp/queries"
)

// statements holds every named query Go uses, one field each, filled from
// queries/*.sql by loadStatements. A field with no query, a query with no
// field, or a name defined twice fails Open, so a typo shows at boot.
type statements struct {
	CreateMigrationsTable string
	AppliedMigrations     string
	RecordMigration       string
	QuickCheck            string
	SQLiteVersion         string

	InsertSandbox         string
	GetSandbox            string
	ResolveSandboxID      string
	ListSandboxes         string
	ListSandboxesByLabels string
	UpdateSandboxState    string
	MarkSandboxReady      string
	DeleteSandbox         string

	InsertContainer                  string
	GetContainer                     string
	ResolveContainerID               string
	ListContainers                   string
	ListContainersByLabels           string
	CountContainersInSandbox         string
	CountContainersByStateAndHandler string
	UpdateContainerState             string
	MarkContainerCreated             string
	SetContainerResources            string
	MarkContainerStarted             string
	MarkContainerExited              string
	DeleteContainer                  string

	ReserveName string
	GetName     string
	ReleaseName string
	ListNames   string

	InsertEvent           string
	ListEvents            string
	LastEventSeq          string
	ListEventsWithSandbox string

	InsertReconcileRun string
	ListReconcileRuns  string

	GetNodeValue string
	SetNodeValue string
}

var queryHeader = regexp.MustCompile(`^--\s*name:\s*(\S+)\s*(\S*)\s*$`)

// parseQueries splits every .sql file of fsys into named statements.
func parseQueries(fsys fs.FS) (map[string]string, error) {
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	where := map[string]string{}
	for _, file := range files {
		body, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, err
		}
		var name string
		var sb strings.Builder
		flush := func() {
			if name != "" {
				out[name] = strings.TrimSpace(sb.String())
			}
			sb.Reset()
		}
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		for line := 1; sc.Scan(); line++ {
			text := sc.Text()
			if m := queryHeader.FindStringSubmatch(text); m != nil {
				flush()
				name = m[1]
				switch m[2] {
				case ":one", ":many", ":exec":
				default:
					return nil, fmt.Errorf("query %s (%s:%d): cardinality must be :one, :many or :exec, not %q", name, file, line, m[2])
				}
				if prev, dup := where[name]; dup {
					return nil, fmt.Errorf("query %s defined twice: %s and %s:%d", name, prev, file, line)
				}
				where[name] = fmt.Sprintf("%s:%d", file, line)
				continue
			}
			if strings.HasPrefix(strings.TrimSpace(text), "--") {
				continue // comments document the query; sqlx would read ": x" in them as a parameter
			}
			if name == "" {
				if strings.TrimSpace(text) != "" {
					return nil, fmt.Errorf("%s:%d: SQL before the first '-- name:' header", file, line)
				}
				continue
			}
			sb.WriteString(text)
			sb.WriteByte('\n')
		}
		flush()
	}
	for name, q := range out {
		if q == "" {
			return nil, fmt.Errorf("query %s (%s) is empty", name, where[name])
		}
	}
	return out, nil
}

// bindStatements fills every field of statements from parsed, by name.
func bindStatements(parsed map[string]string) (statements, error) {
	var st statements
	v := reflect.ValueOf(&st).Elem()
	used := map[string]bool{}
	var missing []string
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Name
		q, ok := parsed[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		v.Field(i).SetString(q)
		used[name] = true
	}
	if len(missing) > 0 {
		return st, fmt.Errorf("queries missing from queries/*.sql: %s", strings.Join(missing, ", "))
	}
	var unknown []string
	for name := range parsed {
		if !used[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return st, fmt.Errorf("queries in queries/*.sql that no code uses: %s", strings.Join(unknown, ", "))
	}
	return st, nil
}

func loadStatements() (statements, error) {
	parsed, err := parseQueries(queries.FS)
	if err != nil {
		return statements{}, err
	}
	return bindStatements(parsed)
}
