import Foundation
import MizanCore
import MizanMockProvider
import MizanTestSupport
import Synchronization
import Testing

@testable import MizanAgent

@Suite("Model aliases: a public name for a local server's model")
struct ModelAliasTests {
    @Test func argumentsAreReadAndCheckedAtStart() throws {
        let aliases = try ModelAliases(parsing: ["alpha=alpha-8b", " beta = beta:7b=q4 ", "same=same"])
        #expect(aliases.locals == ["alpha": "alpha-8b", "beta": "beta:7b=q4", "same": "same"])
        #expect(aliases.names == ["alpha", "beta", "same"])
        #expect(aliases.local(of: "alpha") == "alpha-8b" && aliases.local(of: "other") == "other")
        #expect(aliases.adding(to: ["alpha-8b", "beta"]) == ["alpha-8b", "beta", "alpha", "same"])
        #expect(aliases.names(servedAs: "alpha-8b") == ["alpha-8b", "alpha"])
        #expect(aliases.names(servedAs: "same") == ["same"])
        #expect(try ModelAliases(parsing: []).isEmpty)

        let refusals: [(String, [String], ModelAliasError.Code)] = [
            ("no separator", ["alpha"], .malformed),
            ("no public name", ["=alpha"], .malformed),
            ("no local name", ["alpha= "], .malformed),
            ("a public name twice", ["a=x", "b=y", "a=z"], .duplicateName),
            ("a control character", ["a\u{7}=x"], .invalidName),
            ("a name too long", ["a=" + String(repeating: "x", count: 257)], .invalidName),
        ]
        for (what, arguments, code) in refusals {
            #expect(throws: ModelAliasError(code, argument: arguments.last!), "\(what)") { try ModelAliases(parsing: arguments) }
        }
        let message = "\(ModelAliasError(.duplicateName, argument: "a=z"))"
        #expect(message.contains("'a=z'") && message.contains("public"))
    }

    /// Every endpoint's job reaches the local server under the local name, its other bytes as sent.
    @Test func jobsReachTheServerUnderTheLocalName() async throws {
        try await withServer({ MockProvider.application(.init(models: ["local-m"], tokens: 3), onServerRunning: $0) }) { port in
            let base = "http://127.0.0.1:\(port)/v1"
            let handler = ProviderHandler(baseURL: base, aliases: ModelAliases(["public-m": "local-m"]))
            let catalog = try await handler.catalog()
            #expect(catalog.models == ["local-m", "public-m"], "the aliases add to the server's list")
            let configured = try await ProviderHandler(baseURL: base, models: ["x"], aliases: ModelAliases(["public-m": "local-m"]))
                .catalog()
            #expect(configured.models == ["x", "public-m"], "and to the models configured")

            func lastRequest() async throws -> Data {
                try await sendHTTP(.GET, "http://127.0.0.1:\(port)/mock/last-request", timeout: .seconds(5)).body
            }
            let chat = #"{"model":"public-m","messages":[{"role":"user","content":"hi"}],"temperature":0.25}"#
            for stream in [ProviderHandler.UpstreamStream.never, .auto] {
                let plain = ProviderHandler(baseURL: base, aliases: ModelAliases(["public-m": "local-m"]), upstreamStream: stream)
                let answer = try await plain.respond(to: AgentJob(model: "public-m", body: Data(chat.utf8)))
                let sent = String(decoding: try await lastRequest(), as: UTF8.self)
                #expect(sent.hasPrefix(#"{"model":"local-m","messages":[{"role":"user","content":"hi"}],"temperature":0.25"#), "\(sent)")
                let json = try #require(try JSONSerialization.jsonObject(with: answer.body) as? [String: Any])
                #expect(json["model"] as? String == "local-m", "the answer goes back as the server wrote it")
            }
            let events = EventLog()
            _ = try await handler.stream(
                AgentJob(model: "public-m", body: Data(#"{"model":"public-m","messages":[],"stream":true}"#.utf8), stream: true),
                to: JobEventWriter { events.append($0) })
            #expect(String(decoding: try await lastRequest(), as: UTF8.self) == #"{"model":"local-m","messages":[],"stream":true}"#)
            #expect(events.all.contains { $0.contains("[DONE]") })

            // A form: its `model` field is rewritten, the file travels untouched.
            let boundary = "alias-boundary"
            let form =
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF-bytes\r\n"
                + "--\(boundary)\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\npublic-m\r\n--\(boundary)--\r\n"
            let request = try ClientRequest(
                endpoint: .audioTranscriptions, body: Data(form.utf8), contentType: "multipart/form-data; boundary=\(boundary)")
            let transcript = try await handler.respond(
                to: AgentJob(model: "public-m", endpoint: .audioTranscriptions, body: request.body))
            let sentForm = try #require(MultipartForm(canonical: try await lastRequest()))
            #expect(sentForm.text("model") == "local-m")
            #expect(sentForm.parts.first { $0.name == "file" }?.body == Data("RIFF-bytes".utf8))
            #expect((try JSONSerialization.jsonObject(with: transcript.body) as? [String: Any])?["text"] != nil)

            // A model without an alias goes as it came.
            _ = try await handler.respond(to: AgentJob(model: "local-m", body: Data(#"{"model":"local-m","messages":[]}"#.utf8)))
            #expect(String(decoding: try await lastRequest(), as: UTF8.self).hasPrefix(#"{"model":"local-m""#))
        }
    }

    @Test func anAgentServesAnAliasAndReportsItLoaded() async throws {
        try await withStack { stack in
            var configuration = stack.configuration(
                tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken())
            configuration.modelAliases = ModelAliases(["public-m": "mock-model"])
            let agent = RunningAgent.start(configuration)
            try await waitUntil("the agent serves the alias", poll: .milliseconds(20)) { try await stack.serves("public-m") }
            let answer = try await stack.chat(model: "public-m")
            #expect(answer.status == 200, "\(answer.text)")
            let sent = try await sendHTTP(
                .GET, stack.providerURL.replacingOccurrences(of: "/v1", with: "") + "/mock/last-request", timeout: .seconds(5)
            ).json
            #expect(sent["model"] as? String == "mock-model")
            // The mock lists its model: everything a plain server lists is loaded, under both names.
            try await waitUntil("the node reports its loaded models", poll: .milliseconds(20)) {
                try await stack.gateway.dispatcher.nodes().first?.loadedModels == ["mock-model", "public-m"]
            }
            try await agent.stop()
        }
    }
}

/// Events a stream wrote, in order.
final class EventLog: Sendable {
    private let events = Mutex<[String]>([])
    func append(_ event: String) { events.withLock { $0.append(event) } }
    var all: [String] { events.withLock { $0 } }
}
