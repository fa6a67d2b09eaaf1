import MizanStore
import MizanStoreTesting
import Testing

@Suite("In-memory batch store conformance")
struct InMemoryBatchConformanceTests {
    @Test(arguments: BatchStoreConformance.checks)
    func conformance(_ check: BatchStoreConformance.Check) async throws {
        try await check.run(on: InMemoryStore())
    }
}
