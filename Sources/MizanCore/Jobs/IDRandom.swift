import Synchronization

/// Random bits for ids — request ids, job ids, hold ids — without a system call each: the
/// system generator makes one `getrandom` call per 64 bits, three per request on the gateway's
/// hot path. Not for secrets (tokens and keys use `SystemRandomNumberGenerator`).
///
/// A SplitMix64 sequence from a seed the system generator gives once per process: every call
/// takes the next counter value (an atomic add, no lock) and mixes it, so no two calls in a
/// process get the same bits, and processes differ by their seeds.
public enum IDRandom {
    private static let state = Atomic<UInt64>(UInt64.random(in: 0...UInt64.max))

    /// The next 64 random bits.
    public static func next() -> UInt64 {
        let counter = state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        var z = counter
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
