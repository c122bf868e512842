// Package record owns the copies of crisp's rows that it keeps on the node,
// from which the reconciler rebuilds a lost database: a pod's record, the
// file sandbox.json in its pod dir, and a container's record, annotations
// in its config.json. The CRI server writes them and the reconciler reads
// them, both through this package only. It imports db, protobuf and the
// CRI API: never cri, reconciler or runtimes.
//
// # Records
//
// Records outlive the crispd that wrote them: a node keeps its pods and
// containers across an upgrade, and the next crispd must rebuild their
// rows. So every field has an explicit name (json tags, annotation keys),
// never a Go field name, and every record carries its format's version:
// the "version" field of a pod record, the io.crisp.record-version
// annotation of a container. Records written before versions existed are
// version 0. Readers accept every version up to Version and refuse a newer
// one, naming it, rather than guess. A change that old readers would
// misread (a field renamed, reinterpreted or newly required) gets a new
// version, and the readers keep a path for each older one; a new field
// that old readers may safely ignore does not.
package record

import (
	"fmt"
	"strconv"
)

// Version is the format this package writes, of both kinds of record.
const Version = 1

// checkVersion refuses a format newer than this package reads: a later
// crispd wrote it, and guessing at its fields could rebuild a wrong row.
func checkVersion(v int) error {
	switch {
	case v < 0:
		return fmt.Errorf("version %d is invalid", v)
	case v > Version:
		return fmt.Errorf("version %d is newer than this crispd reads (up to %d): a later crispd wrote it", v, Version)
	}
	return nil
}

// versionString is how a container record's annotation spells Version.
var versionString = strconv.Itoa(Version)
