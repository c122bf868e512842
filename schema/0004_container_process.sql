-- What CreateContainer resolved for a container's process, for
-- ContainerStatus (user, resources, stop_signal) and StopContainer, so that
-- neither depends on the image still being there or on re-reading config.json:
--   run_user    JSON {"uid","gid","supplemental_groups"}: the effective ids
--               after the image's /etc/passwd and /etc/group; '' = unknown.
--   resources   JSON of the CRI LinuxContainerResources in force (protojson);
--               UpdateContainerResources rewrites it; '' = unknown.
--   stop_signal the signal number that stops it; 0 = unknown (the image's or
--               SIGTERM, resolved at stop time as before).
ALTER TABLE containers ADD COLUMN run_user TEXT NOT NULL DEFAULT '' CHECK (run_user = '' OR json_valid(run_user));
ALTER TABLE containers ADD COLUMN resources TEXT NOT NULL DEFAULT '' CHECK (resources = '' OR json_valid(resources));
ALTER TABLE containers ADD COLUMN stop_signal INTEGER NOT NULL DEFAULT 0;
