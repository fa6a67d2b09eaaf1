import Foundation
import MizanCore
import MizanStore
import Testing

@testable import MizanStorePostgres

@Suite("Store notification payloads")
struct EventPayloadTests {
    @Test func encodedTextIsJSONThatDecodesToTheSameEvents() throws {
        let id = JobID()
        let awkward = "quote \" backslash \\ newline \n tab \t bell \u{07} é 🚀 </script>"
        let events: [StoreEvent] = [
            .jobsAvailable(model: "llama3 \"8b\"", count: 3),
            .jobFinished(id: id, state: .succeeded),
            .streamed(id: id, data: [awkward, #"{"choices":[{"delta":{"content":"hi"}}]}"#], end: true),
        ]
        let text = EventPayload(origin: "instance-1", events: events).encoded()
        // Valid JSON by Foundation's own parser, and the same events back.
        _ = try JSONSerialization.jsonObject(with: Data(text.utf8))
        let decoded = try #require(EventPayload.decode(text))
        #expect(decoded.origin == "instance-1")
        #expect(decoded.events.count == 3)
        #expect(decoded.events.contains { if case .jobsAvailable("llama3 \"8b\"", 3) = $0 { true } else { false } })
        #expect(decoded.events.contains { if case .jobFinished(id, .succeeded) = $0 { true } else { false } })
        #expect(decoded.events.contains { if case .streamed(id, let data, true) = $0 { data.first == awkward } else { false } })
    }

    @Test func ownNotificationsAreToldApartWithoutParsing() {
        let own = EventPayload(origin: "me", events: [.jobsAvailable(model: "m", count: 1)]).encoded()
        let other = EventPayload(origin: "you", events: [.jobsAvailable(model: "m", count: 1)]).encoded()
        #expect(EventPayload.isOwn(own, origin: "me"))
        #expect(!EventPayload.isOwn(other, origin: "me"))
        // The form PostgreSQL's json_build_object writes (a requeue notification).
        #expect(EventPayload.isOwn(#"{"o" : "me", "a" : [{"m" : "m", "n" : 1}]}"#, origin: "me"))
        #expect(!EventPayload.isOwn(#"{"o" : "meme", "a" : []}"#, origin: "me"))
    }
}
