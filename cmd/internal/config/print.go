package config

import (
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Write prints c as TOML that Load reads back, each key preceded by its help
// text as a comment: what `crispd config` shows.
func (c Config) Write(w io.Writer) error {
	fmt.Fprintln(w, "# crispd effective configuration (defaults, then --config file, then flags).")
	return writeTable(w, reflect.ValueOf(c), "")
}

func writeTable(w io.Writer, v reflect.Value, prefix string) error {
	t := v.Type()
	var tables []int
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		kind := f.Type.Kind()
		if kind == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) || kind == reflect.Map {
			tables = append(tables, i)
			continue
		}
		if err := writeKey(w, f, v.Field(i).Interface()); err != nil {
			return err
		}
	}
	for _, i := range tables {
		f := t.Field(i)
		name := prefix + f.Tag.Get("toml")
		if f.Type.Kind() == reflect.Map {
			comment(w, f.Tag.Get("help"))
			keys := v.Field(i).MapKeys()
			names := make([]string, len(keys))
			for j, k := range keys {
				names[j] = k.String()
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(w, "\n[%s.%s]\n", name, k)
				if err := writeTable(w, v.Field(i).MapIndex(reflect.ValueOf(k)), name+"."+k+"."); err != nil {
					return err
				}
			}
			continue
		}
		fmt.Fprintln(w)
		comment(w, f.Tag.Get("help"))
		fmt.Fprintf(w, "[%s]\n", name)
		if err := writeTable(w, v.Field(i), name+"."); err != nil {
			return err
		}
	}
	return nil
}

func writeKey(w io.Writer, f reflect.StructField, val any) error {
	comment(w, f.Tag.Get("help"))
	line, err := toml.Marshal(map[string]any{f.Tag.Get("toml"): val})
	if err != nil {
		return err
	}
	_, err = w.Write(line)
	return err
}

func comment(w io.Writer, help string) {
	if help == "" {
		return
	}
	for _, line := range wrap(help, 76) {
		fmt.Fprintf(w, "# %s\n", line)
	}
}

func wrap(s string, width int) []string {
	var lines []string
	var cur string
	for _, word := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(word) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += word
	}
	return append(lines, cur)
}
