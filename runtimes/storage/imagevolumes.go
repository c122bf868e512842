package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
)

// KindImageVolume marks the record of an image volume (KEP-4639): a
// container record made from the volume's image, mounted like a rootfs
// and bound read-only into its owner container. Being a record, it is
// listed, owned and removed as a container's rootfs is, and one left by
// a crash is found again.
const KindImageVolume = "image-volume"

// ImageVolumeID is the id of the record of mount index of container
// owner: derived, so that removing the container finds its volumes
// without a lookup.
func ImageVolumeID(owner string, index int) string {
	sum := sha256.Sum256([]byte(owner + "/image-volume/" + strconv.Itoa(index)))
	return hex.EncodeToString(sum[:])
}

// ImageVolumeName is the storage name of that record: names are unique in
// storage, as the owner's own is.
func ImageVolumeName(ownerName string, index int) string {
	return fmt.Sprintf("%s~image-volume-%d", ownerName, index)
}

// ImageVolumes maps the id of every image volume record to its owner.
func (s *Store) ImageVolumes() (map[string]string, error) {
	recs, err := s.Records()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range recs {
		if r.Meta.Kind == KindImageVolume {
			out[r.ID] = r.Meta.Owner
		}
	}
	return out, nil
}
