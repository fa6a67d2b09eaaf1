import MizanStore
import MizanStoreTesting
import Testing

@Suite("In-memory store conformance")
struct InMemoryConformanceTests {
    @Test(arguments: StoreConformance.checks)
    func conformance(_ check: StoreConformance.Check) async throws {
        try await check.run(on: InMemoryStore())
    }
}

@Suite("In-memory access store conformance")
struct InMemoryAccessConformanceTests {
    @Test(arguments: AccessConformance.checks)
    func conformance(_ check: AccessConformance.Check) async throws {
        try await check.run(on: InMemoryStore())
    }
}
