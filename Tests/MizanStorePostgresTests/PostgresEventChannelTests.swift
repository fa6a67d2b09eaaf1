import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStore
import MizanTestSupport
import PostgresNIO
import Testing

@testable import MizanStorePostgres

@Suite("PostgreSQL event channel", .timeLimit(.minutes(2)))
struct PostgresEventChannelTests {
    @Test func notificationsReachOtherInstancesNotTheSender() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let a = makeContext(client, statements: statements).events
            let b = makeContext(client).events
            let (logA, logB) = (EventLog(a), EventLog(b))
            try await withListening([a, b]) {
                try await a.notify([.jobsAvailable(model: "m1", count: 2)])
                #expect(statements.value == 1, "one notification, one statement")
                #expect(try await eventually { logB.all == [.jobsAvailable(model: "m1", count: 2)] })
                // B's answer comes back to A; A's own notification never does.
                try await b.notify([.jobsAvailable(model: "m2", count: 1)])
                #expect(try await eventually { !logA.all.isEmpty })
                #expect(logA.all == [.jobsAvailable(model: "m2", count: 1)])
            }
        }
    }

    @Test func largeBatchesAreSplitAcrossNotifications() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let a = makeContext(client, statements: statements).events
            let b = makeContext(client).events
            let log = EventLog(b)
            let events = (0..<(EventPayload.maxEvents + 5)).map { _ in StoreEvent.jobFinished(id: JobID(), state: .succeeded) }
            try await withListening([a, b]) {
                try await a.notify(events)
                #expect(statements.value == 2, "\(events.count) events fit in two notifications")
                #expect(try await eventually { log.all.count == events.count })
                #expect(log.all == events)
                try await a.notify([])
                #expect(statements.value == 2, "no events, no statement")
            }
        }
    }

    @Test func localEventsStayOnThisInstance() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let a = makeContext(client, statements: statements).events
            let b = makeContext(client).events
            let (logA, logB) = (EventLog(a), EventLog(b))
            try await withListening([a, b]) {
                a.publishLocally([.jobsAvailable(model: "m1", count: 1)])
                #expect(logA.all == [.jobsAvailable(model: "m1", count: 1)], "delivered at once, in memory")
                // A notification sent after it arrives at B alone: the local event never went out.
                try await a.notify([.jobsAvailable(model: "m3", count: 1)])
                #expect(try await eventually { !logB.all.isEmpty })
                #expect(logB.all == [.jobsAvailable(model: "m3", count: 1)])
                #expect(statements.value == 1)
            }
        }
    }

    @Test func relayedOutputArrivesWholeAndInOrder() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let a = makeContext(client, statements: statements).events
            let b = makeContext(client).events
            let log = EventLog(b)
            let id = JobID()
            let data = (0..<30).map { index in "\(index):" + String(repeating: "x", count: 1_000) }
            try await withListening([a, b]) {
                try await a.relay(id, data: data, end: true)
                let sent = statements.value
                #expect(sent > 1, "30 kB does not fit in one notification")
                #expect(try await eventually { log.all.count == sent })
                var received: [String] = []
                var ends: [Bool] = []
                for event in log.all {
                    guard case .streamed(let streamed, let items, let end) = event, streamed == id else { continue }
                    received += items
                    ends.append(end)
                }
                #expect(received == data)
                #expect(ends == Array(repeating: false, count: sent - 1) + [true], "only the last notification ends the stream")
            }
        }
    }

    @Test func anItemTooLargeForOneNotificationIsRefused() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let channel = makeContext(client).events
            let code = await mizanCode { try await channel.relay(JobID(), data: [String(repeating: "y", count: 9_000)], end: false) }
            #expect(code == .payloadTooLarge)
        }
    }

    @Test func unreadableNotificationsAreIgnored() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let a = makeContext(client).events
            let b = makeContext(client).events
            let log = EventLog(b)
            try await withListening([a, b]) {
                _ = try await client.query("SELECT pg_notify(\(PostgresEventChannel.name), 'not a payload')").collectInts()
                try await a.notify([.jobsAvailable(model: "m1", count: 1)])
                #expect(try await eventually { !log.all.isEmpty })
                #expect(log.all == [.jobsAvailable(model: "m1", count: 1)])
            }
        }
    }

    @Test func aListenerThatReconnectsTellsWaitersToLookAgain() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let channel = makeContext(client).events
            let log = EventLog(channel)
            try await withListening([channel]) {
                _ = try await client.query(
                    """
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE query LIKE 'LISTEN%' AND datname = current_database() AND pid <> pg_backend_pid()
                    """
                ).collectInts()
                #expect(try await eventually { log.all.contains(.resync) }, "resync published once back")
                #expect(try await eventually { channel.isListening })
            }
        }
    }
}
