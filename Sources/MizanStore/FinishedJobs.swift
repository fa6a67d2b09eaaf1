import MizanCore

/// The ids of finished jobs in the order they finished: a queue with O(1) append and
/// pop-first (a head index into an array, compacted as it goes).
struct FinishedJobs {
    private var ids: [JobID] = []
    private var head = 0

    /// How many ids it holds.
    var count: Int { ids.count - head }

    mutating func append(_ id: JobID) {
        ids.append(id)
    }

    mutating func popFirst() -> JobID? {
        guard head < ids.count else { return nil }
        let id = ids[head]
        head += 1
        if head >= 1024, head * 2 >= ids.count {
            ids.removeFirst(head)
            head = 0
        }
        return id
    }

    mutating func removeAll(where shouldRemove: (JobID) -> Bool) {
        ids = ids[head...].filter { !shouldRemove($0) }
        head = 0
    }
}
