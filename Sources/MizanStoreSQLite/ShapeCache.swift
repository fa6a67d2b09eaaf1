import Synchronization

/// Values worked out once per shape and kept: the text of a statement built for a batch's size or
/// a lease's models and endpoints, a node's models decoded from their JSON, which would otherwise
/// be built again (string joins, a JSON decoder) on the one writer at every call. Bounded: past
/// ``limit`` entries it starts again.
final class ShapeCache<Value: Sendable>: Sendable {
    private let values = Mutex<[String: Value]>([:])
    /// The most values kept.
    static var limit: Int { 256 }

    /// The value kept for `key`, or `make()`'s, kept for next time.
    func value(_ key: String, make: () throws -> Value) rethrows -> Value {
        if let value = values.withLock({ $0[key] }) { return value }
        let value = try make()
        values.withLock { values in
            if values.count >= Self.limit { values = [:] }
            values[key] = value
        }
        return value
    }
}

/// The statement texts of each shape, and how a statement of any size is given one of a few.
enum SQLShapes {
    /// The statement texts of each shape (a lease's models and endpoints, a batch's size).
    static let texts = ShapeCache<String>()

    /// The next power of two from `count`: how many rows a statement of `count` binds, so that
    /// statements of any size share a few shapes (and prepared statements).
    static func width(_ count: Int) -> Int {
        count <= 1 ? 1 : 1 << (Int.bitWidth - (count - 1).leadingZeroBitCount)
    }

    /// `count` numbered binds from `?first`, separated by commas.
    static func marks(_ count: Int, from first: Int) -> String {
        (first..<first + count).map { "?\($0)" }.joined(separator: ", ")
    }
}
