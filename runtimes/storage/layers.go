package storage

import "fmt"

// ContainerLayers maps the read-write layer of every container record in
// the store, crisp's or not, to the container's id: an overlay mount of a
// layer that is in no such map belongs to no container.
func (s *Store) ContainerLayers() (map[string]string, error) {
	cs, err := s.store.Containers()
	if err != nil {
		return nil, fmt.Errorf("list storage containers: %w", err)
	}
	out := make(map[string]string, len(cs))
	for _, c := range cs {
		out[c.LayerID] = c.ID
	}
	return out, nil
}

// Record returns crisp's record of container id; a missing record, or
// one that is not crisp's, is ErrNotFound.
func (s *Store) Record(id string) (Record, error) {
	recs, err := s.Records()
	if err != nil {
		return Record{}, err
	}
	for _, r := range recs {
		if r.ID == id {
			return r, nil
		}
	}
	return Record{}, fmt.Errorf("storage of container %s: %w", id, ErrNotFound)
}
