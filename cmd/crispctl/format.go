package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// outputFormats are the values writeResult accepts, in the order help text
// and errors list them.
var outputFormats = []string{"table", "json", "csv"}

// writeResult prints res to w as "table" (aligned columns for people),
// "json" (an array of objects, keys in column order) or "csv" (with a header
// row). It fails on an unknown format, naming the allowed ones, or when w
// does.
func writeResult(w io.Writer, res *db.Result, format string) error {
	switch format {
	case "table":
		return writeTable(w, res)
	case "json":
		return writeJSON(w, res)
	case "csv":
		return writeCSV(w, res)
	}
	return fmt.Errorf("unknown output format %q (want one of %s)", format, strings.Join(outputFormats, ", "))
}

// tableEscaper keeps one row on one line and tabs from splitting cells.
var tableEscaper = strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`)

func writeTable(w io.Writer, res *db.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := make([]string, len(res.Columns))
	for i, c := range res.Columns {
		line[i] = tableEscaper.Replace(c)
	}
	fmt.Fprintln(tw, strings.Join(line, "\t"))
	for _, row := range res.Rows {
		for i, v := range row {
			if v == nil {
				line[i] = "NULL" // distinguishes SQL NULL from ''
			} else {
				line[i] = tableEscaper.Replace(text(v))
			}
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

// writeCSV writes NULL as an empty field, as sqlite3 -csv does: CSV has no
// null, and a literal "NULL" would be indistinguishable from the string.
func writeCSV(w io.Writer, res *db.Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(res.Columns); err != nil {
		return err
	}
	record := make([]string, len(res.Columns))
	for _, row := range res.Rows {
		for i, v := range row {
			record[i] = ""
			if v != nil {
				record[i] = text(v)
			}
		}
		if err := cw.Write(record); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeJSON builds each object by hand because a map would sort the keys
// and lose the column order of the SELECT.
func writeJSON(w io.Writer, res *db.Result) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for r, row := range res.Rows {
		if r > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('{')
		for i, v := range row {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := appendJSON(&buf, res.Columns[i]); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := appendJSON(&buf, jsonValue(v)); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	}
	buf.WriteByte(']')
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := out.WriteTo(w)
	return err
}

// appendJSON encodes v without HTML escaping: this output is read in a
// terminal, where \u003c helps nobody.
func appendJSON(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode's trailing newline
	return nil
}

// jsonValue turns what JSON cannot hold (SQLite can store ±Inf) into text.
func jsonValue(v any) any {
	if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return text(f)
	}
	return v
}

// text renders a non-NULL value as SQLite would print it.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}
