package ocispec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxDBFile bounds how much of an image's /etc/passwd or /etc/group is
// read: the image is untrusted input.
const maxDBFile = 16 << 20

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// userDB is an image's /etc/passwd and /etc/group, read on first use.
type userDB struct {
	fsys              fs.FS
	passwd            []passwdEntry
	groups            []groupEntry
	hasPasswd, loaded bool
	hasGroup, gloaded bool
}

func (db *userDB) users() ([]passwdEntry, bool, error) {
	if !db.loaded {
		lines, ok, err := readDB(db.fsys, "etc/passwd", 7)
		if err != nil {
			return nil, false, err
		}
		for _, f := range lines {
			uid, err1 := parseID(f[2])
			gid, err2 := parseID(f[3])
			if f[0] != "" && err1 == nil && err2 == nil {
				db.passwd = append(db.passwd, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
			}
		}
		db.hasPasswd, db.loaded = ok, true
	}
	return db.passwd, db.hasPasswd, nil
}

func (db *userDB) grps() ([]groupEntry, bool, error) {
	if !db.gloaded {
		lines, ok, err := readDB(db.fsys, "etc/group", 4)
		if err != nil {
			return nil, false, err
		}
		for _, f := range lines {
			gid, err := parseID(f[2])
			if f[0] == "" || err != nil {
				continue
			}
			g := groupEntry{name: f[0], gid: gid}
			for m := range strings.SplitSeq(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					g.members = append(g.members, m)
				}
			}
			db.groups = append(db.groups, g)
		}
		db.hasGroup, db.gloaded = ok, true
	}
	return db.groups, db.hasGroup, nil
}

// readDB reads a colon-separated file with exactly n fields a line,
// skipping comments and malformed lines. A missing file is not an error.
func readDB(fsys fs.FS, name string, n int) ([][]string, bool, error) {
	if fsys == nil {
		return nil, false, nil
	}
	f, err := fsys.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the image's /%s: %w", name, err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, maxDBFile))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if fields := strings.Split(line, ":"); len(fields) == n {
			out = append(out, fields)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("read the image's /%s: %w", name, err)
	}
	return out, true, nil
}

// parseID parses a uid or gid; 2^32-1 is (uid_t)-1, never a real id.
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, fmt.Errorf("%q is not a valid id", s)
	}
	return uint32(n), nil
}

// checkID64 validates a uid or gid given as a CRI int64.
func checkID64(field string, v int64) (uint32, error) {
	if v < 0 || v >= math.MaxUint32 {
		return 0, fmt.Errorf("%s %d is out of range: %w", field, v, ErrInvalid)
	}
	return uint32(v), nil
}

func (db *userDB) byName(name string) (passwdEntry, bool, error) {
	users, _, err := db.users()
	for _, u := range users {
		if u.name == name {
			return u, true, err
		}
	}
	return passwdEntry{}, false, err
}

func (db *userDB) byUID(uid uint32) (passwdEntry, bool, error) {
	users, _, err := db.users()
	for _, u := range users {
		if u.uid == uid {
			return u, true, err
		}
	}
	return passwdEntry{}, false, err
}

// userOf resolves a user given by name or number. A number not in
// /etc/passwd is fine (primary gid 0, no name); a name must be there.
func (db *userDB) userOf(field, spec string) (passwdEntry, error) {
	if uid, err := parseID(spec); err == nil {
		u, ok, err := db.byUID(uid)
		if err != nil || !ok {
			return passwdEntry{uid: uid}, err
		}
		return u, nil
	}
	u, ok, err := db.byName(spec)
	if err != nil {
		return passwdEntry{}, err
	}
	if !ok {
		if _, has, _ := db.users(); !has {
			return passwdEntry{}, fmt.Errorf("%s %q: the image has no /etc/passwd: %w", field, spec, ErrInvalid)
		}
		return passwdEntry{}, fmt.Errorf("%s %q not in the image's /etc/passwd: %w", field, spec, ErrInvalid)
	}
	return u, nil
}

// groupOf resolves a group given by name or number.
func (db *userDB) groupOf(field, spec string) (uint32, error) {
	if gid, err := parseID(spec); err == nil {
		return gid, nil
	}
	groups, has, err := db.grps()
	if err != nil {
		return 0, err
	}
	for _, g := range groups {
		if g.name == spec {
			return g.gid, nil
		}
	}
	if !has {
		return 0, fmt.Errorf("%s %q: the image has no /etc/group: %w", field, spec, ErrInvalid)
	}
	return 0, fmt.Errorf("%s %q not in the image's /etc/group: %w", field, spec, ErrInvalid)
}

// resolveUser picks the process's uid, gid and groups: run_as_user or
// run_as_username, else the image's User ("uid", "name", with ":gid" or
// ":group"), else root; run_as_group overrides the primary group. The
// additional groups are the primary group, the user's groups in the image's
// /etc/group (unless supplemental_groups_policy is Strict), then the CRI
// supplemental_groups. It also returns the user's home for $HOME.
func resolveUser(fsys fs.FS, sc *runtimeapi.LinuxContainerSecurityContext, imageUser string) (specs.User, string, error) {
	db := &userDB{fsys: fsys}
	var u passwdEntry
	var err error
	switch {
	case sc.GetRunAsUser() != nil:
		uid, err := checkID64("security_context.run_as_user", sc.GetRunAsUser().GetValue())
		if err != nil {
			return specs.User{}, "", err
		}
		u, err = db.userOf("security_context.run_as_user", strconv.FormatUint(uint64(uid), 10))
		if err != nil {
			return specs.User{}, "", err
		}
	case sc.GetRunAsUsername() != "":
		if u, err = db.userOf("security_context.run_as_username", sc.GetRunAsUsername()); err != nil {
			return specs.User{}, "", err
		}
	default:
		user, group, hasGroup := strings.Cut(imageUser, ":")
		if user == "" {
			user = "0"
		}
		if u, err = db.userOf("the image's User", user); err != nil {
			return specs.User{}, "", err
		}
		if hasGroup {
			if u.gid, err = db.groupOf("the image's User group", group); err != nil {
				return specs.User{}, "", err
			}
		}
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
			return specs.User{}, "", fmt.Errorf("security_context.run_as_group needs run_as_user or run_as_username: %w", ErrInvalid)
		}
		if u.gid, err = checkID64("security_context.run_as_group", g.GetValue()); err != nil {
			return specs.User{}, "", err
		}
	}
	gids := []uint32{u.gid}
	if u.name != "" && sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict {
		groups, _, err := db.grps()
		if err != nil {
			return specs.User{}, "", err
		}
		for _, g := range groups {
			if slices.Contains(g.members, u.name) {
				gids = append(gids, g.gid)
			}
		}
	}
	for i, g := range sc.GetSupplementalGroups() {
		gid, err := checkID64(fmt.Sprintf("security_context.supplemental_groups[%d]", i), g)
		if err != nil {
			return specs.User{}, "", err
		}
		gids = append(gids, gid)
	}
	home := u.home
	if home == "" {
		home = "/"
	}
	// Sorted and without repeats: Linux sorts the groups setgroups(2) is
	// given, so runc's containers see them in that order anyway; gVisor
	// keeps the order it is given, and would show another.
	slices.Sort(gids)
	return specs.User{UID: u.uid, GID: u.gid, AdditionalGids: slices.Compact(gids)}, home, nil
}
