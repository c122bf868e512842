package cgstats

// Sum adds up samples of disjoint cgroups (a pod's containers when the pod
// has no cgroup of its own). Counters and sizes add; limits and pressure
// do not (a stall in one cgroup is not a stall of the sum), so they are
// left out. A part is present when any sample has it. The time is the
// latest sample's.
func Sum(samples []Sample) Sample {
	var out Sample
	for _, s := range samples {
		if s.Time.After(out.Time) {
			out.Time = s.Time
		}
		if s.CPU != nil {
			if out.CPU == nil {
				out.CPU = &CPU{}
			}
			out.CPU.UsageNanos += s.CPU.UsageNanos
			out.CPU.UserNanos += s.CPU.UserNanos
			out.CPU.SystemNanos += s.CPU.SystemNanos
			if t := s.CPU.Throttling; t != nil {
				if out.CPU.Throttling == nil {
					out.CPU.Throttling = &Throttling{}
				}
				out.CPU.Throttling.Periods += t.Periods
				out.CPU.Throttling.ThrottledPeriods += t.ThrottledPeriods
				out.CPU.Throttling.ThrottledNanos += t.ThrottledNanos
			}
		}
		if m := s.Memory; m != nil {
			if out.Memory == nil {
				out.Memory = &Memory{}
			}
			o := out.Memory
			o.Usage += m.Usage
			o.WorkingSet += m.WorkingSet
			o.RSS += m.RSS
			o.Cache += m.Cache
			o.MappedFile += m.MappedFile
			o.ActiveFile += m.ActiveFile
			o.InactiveFile += m.InactiveFile
			o.PageFaults += m.PageFaults
			o.MajorFaults += m.MajorFaults
			o.Failcnt += m.Failcnt
			o.KernelUsage += m.KernelUsage
			o.OOMKills += m.OOMKills
		}
		if s.Swap != nil {
			if out.Swap == nil {
				out.Swap = &Swap{}
			}
			out.Swap.Usage += s.Swap.Usage
		}
		if s.IO != nil {
			if out.IO == nil {
				out.IO = &IO{}
			}
			out.IO.ReadBytes += s.IO.ReadBytes
			out.IO.WriteBytes += s.IO.WriteBytes
			out.IO.Reads += s.IO.Reads
			out.IO.Writes += s.IO.Writes
		}
		if s.Pids != nil {
			if out.Pids == nil {
				out.Pids = &Pids{}
			}
			out.Pids.Current += s.Pids.Current
		}
		if s.Tasks != nil {
			if out.Tasks == nil {
				out.Tasks = &Tasks{}
			}
			out.Tasks.Processes += s.Tasks.Processes
			out.Tasks.FileDescriptors += s.Tasks.FileDescriptors
			out.Tasks.Sockets += s.Tasks.Sockets
		}
	}
	return out
}
