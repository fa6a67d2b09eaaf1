import MizanCore

/// A binary min-heap of queued jobs of one model: highest priority first, then lowest fair
/// tag, then oldest id. Entries may go stale (the job was cancelled, timed out or promoted);
/// the store skips them on pop.
struct JobQueueHeap {
    struct Entry {
        var priority: Int
        var tag: Double
        var id: JobID

        func precedes(_ other: Entry) -> Bool {
            if priority != other.priority { return priority > other.priority }
            if tag != other.tag { return tag < other.tag }
            return id < other.id
        }

        /// Whether the entry still stands for `job` as it is queued now.
        func isCurrent(for job: Job) -> Bool {
            job.state == .accepted && job.priority == priority && job.scheduling.fairTag == tag
        }
    }

    private(set) var entries: [Entry] = []

    var isEmpty: Bool { entries.isEmpty }
    var first: Entry? { entries.first }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].precedes(entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popFirst() -> Entry? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let top = entries.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var best = parent
            if left < entries.count, entries[left].precedes(entries[best]) { best = left }
            if right < entries.count, entries[right].precedes(entries[best]) { best = right }
            if best == parent { break }
            entries.swapAt(parent, best)
            parent = best
        }
        return top
    }
}
