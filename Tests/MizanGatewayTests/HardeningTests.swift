import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanGateway
import MizanLogging
import MizanStore
import MizanTestSupport
import Testing

/// Runs an upstream that answers every chat completion with `body` (an upstream that lies).
func withFixedUpstream<T: Sendable>(_ body: String, _ work: (String) async throws -> T) async throws -> T {
    let router = Router()
    router.post("/v1/chat/completions") { _, _ in
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    return try await withServer({ running in
        Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { await running($0.localAddress?.port ?? 0) })
    }) { port in
        try await work("http://127.0.0.1:\(port)/v1")
    }
}

@Suite("Hostile input: usage, duplicate keys, model names, framing")
struct HardeningTests {
    // Finding 1: a node's usage report is untrusted input.
    @Test func refusesImpossibleUsageFromANode() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["local"])
            async let answer = gateway.chat(model: "local")
            let job = try #require(try await gateway.lease(token: node.token).first)
            for bad in ["9223372036854775807", "-5", "1000000001"] {
                let body =
                    #"{"attempt":\#(job.attempt),"result":"e30=","usage":{"promptTokens":\#(bad),"completionTokens":1,"#
                    + #""source":"provider"}}"#
                let refused = try await gateway.send(.POST, "/agent/v1/jobs/\(job.jobID)/complete", token: node.token, body: body)
                #expect(refused.status == 400, "\(bad): \(refused.text)")
                #expect(refused.errorMessage?.contains("promptTokens") == true)
            }
            #expect(try await gateway.complete(job, token: node.token).status == 200)
            #expect(try await answer.status == 200)
            let summary = try #require(try await gateway.store.usageSummary().first)
            #expect(summary.promptTokens == 7 && summary.completionTokens == 3)
        }
    }

    // Finding 1, through a route: twice Int.max from upstream must not trap, and is not believed.
    @Test func survivesAnUpstreamReportingImpossibleUsage() async throws {
        let lie =
            #"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","#
            + #""content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9223372036854775807,"#
            + #""completion_tokens":9223372036854775807,"total_tokens":9223372036854775807}}"#
        try await withFixedUpstream(lie) { base in
            try await withGateway(routes: [ProviderRoute(model: "liar", baseURL: base)]) { (gateway: Harness) async throws in
                for _ in 0..<3 { #expect(try await gateway.chat(model: "liar").status == 200) }
                let summary = try #require(try await gateway.store.usageSummary().first)
                #expect(summary.requests == 3)
                #expect(summary.promptTokens > 0 && summary.promptTokens < 1000)
                #expect(summary.completionTokens > 0 && summary.completionTokens < 1000)
            }
        }
    }

    // Finding 2: billing smuggling with a second `model`.
    @Test func refusesDuplicateTopLevelKeys() async throws {
        try await withMock { base in
            try await withGateway(routes: [ProviderRoute(model: "cheap", baseURL: base, upstreamModel: "mock-model")]) {
                (gateway: Harness) async throws in
                for body in [
                    #"{"model":"cheap","model":"gpt-4-expensive","messages":[]}"#,
                    #"{"model":"cheap","mod\u0065l":"gpt-4-expensive","messages":[]}"#,
                    #"{"model":"cheap","messages":[],"stream":false,"stream":true}"#,
                ] {
                    let answer = try await gateway.send(.POST, "/v1/chat/completions", token: gateway.apiKey, body: body)
                    #expect(answer.status == 400, "\(body): \(answer.text)")
                    #expect(answer.errorMessage?.contains("more than once") == true)
                }
                #expect(try await gateway.store.usageSummary().isEmpty)
            }
        }
    }

    // Finding 3: model names are bounded and made-up ones leave no usage rows.
    @Test func boundsModelNamesAndRecordsNoUsageForUnknownModels() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let long = try await gateway.chat(model: String(repeating: "m", count: 300))
            #expect(long.status == 400 && long.errorMessage?.contains("256") == true)
            #expect(long.body.count < 1000)
            for index in 0..<5 {
                #expect(try await gateway.chat(model: "made-up-\(index)").status == 404)
            }
            #expect(try await gateway.store.usageSummary().isEmpty)
        }
    }

    // Finding 5: client faults are 4xx, never 5xx.
    @Test func answersFramingFaultsWithClientErrors() async throws {
        try await withGateway { (gateway: Harness) async throws in
            for size in ["zz", "ffffffffffffffffff"] {
                let connection = try await RawConnection.open(port: gateway.port)
                try await connection.send(
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        + "\(gateway.apiKey)\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\nabc\r\n"
                )
                #expect(await connection.waitFor("HTTP/1.1 4"), "\(size): \(connection.received)")
                #expect(!connection.received.contains("HTTP/1.1 5"))
                connection.close()
            }
            let gzip = try await RawConnection.open(port: gateway.port)
            try await gzip.send(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(gateway.apiKey)\r\nTransfer-Encoding: "
                    + "gzip, chunked\r\n\r\n0\r\n\r\n"
            )
            #expect(await gzip.waitFor("HTTP/1.1 501"), "\(gzip.received)")
            gzip.close()

            let get = try await gateway.send(.GET, "/v1/chat/completions", token: gateway.apiKey)
            #expect(get.status == 405 && get.errorCode == "method_not_allowed")
            let fraction = try await gateway.chat(extra: #","max_tokens":1.5"#)
            #expect(fraction.status == 400)
            #expect(fraction.errorMessage?.contains("max_tokens") == true, "\(fraction.text)")
        }
    }

    // Finding 5: a client that leaves mid-body is not a server error.
    @Test func aClientLeavingMidBodyIsNoServerError() async throws {
        let sink = CapturingLogHandler.Sink()
        let logger = Logger(label: "mizan.gateway") { _ in CapturingLogHandler(sink: sink) }
        try await withGateway(logger: logger) { (gateway: Harness) async throws in
            let connection = try await RawConnection.open(port: gateway.port)
            try await connection.send(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(gateway.apiKey)\r\nContent-Length: "
                    + "1000\r\n\r\n{\"model\":"
            )
            try await Task.sleep(for: .milliseconds(100))
            connection.close()
            // The request ends as the client's doing (499), with no error logged.
            #expect(
                try await eventually { sink.all.contains { $0.message == "request" && $0.metadata["http.path"] == "/v1/chat/completions" } }
            )
            let line = try #require(sink.all.first { $0.message == "request" && $0.metadata["http.path"] == "/v1/chat/completions" })
            #expect(line.metadata["http.status"] == "499", "\(line.metadata)")
            #expect(!sink.all.contains { $0.level >= .error }, "\(sink.all.filter { $0.level >= .error }.map(\.message))")
        }
    }

    // Finding 4: no logged value can forge a line.
    @Test func escapesControlCharactersInEveryLoggedValue() async throws {
        let sink = CapturingLogHandler.Sink()
        var logger = Logger(label: "test") { _ in SanitizingLogHandler(CapturingLogHandler(sink: sink)) }
        logger[metadataKey: "who\nami"] = "a\u{0}b"
        logger.info(
            "model x\n2026-01-01 info forged line", metadata: ["mizan.model": "x\n<fake line>\r\u{7}", "list": .array(["\u{2028}"])])
        let entry = try #require(sink.all.first)
        #expect(entry.message == "model x\\n2026-01-01 info forged line")
        #expect(entry.metadata["mizan.model"] == "x\\n<fake line>\\r\\u{7}")
        #expect(entry.metadata["who\\nami"] == "a\\0b")
        #expect(entry.metadata["list"]?.contains("\\u{2028}") == true)
        for text in [entry.message] + Array(entry.metadata.keys) + Array(entry.metadata.values) {
            #expect(!text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x2028 })
        }
    }
}

@Suite("Connections: idle, head and body timeouts, the cap, early answers")
struct ConnectionTests {
    static let tight = Gateway.Configuration(idleTimeout: .seconds(1), bodyTimeout: .seconds(1), maxConnections: 8)

    // Finding 6: idle, half-sent heads and stalled bodies are closed.
    @Test func closesIdleAndHalfSentConnections() async throws {
        // Two seconds, so that a loaded machine still sends each head before the timeout.
        let configuration = Gateway.Configuration(idleTimeout: .seconds(2), bodyTimeout: .seconds(2))
        try await withGateway(configuration: configuration) { (gateway: Harness) async throws in
            let halfHead = try await RawConnection.open(port: gateway.port)
            try await halfHead.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthor")
            let stalledBody = try await RawConnection.open(port: gateway.port)
            try await stalledBody.send(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(gateway.apiKey)\r\nContent-Length: 100\r\n\r\n{")
            let idle = try await RawConnection.open(port: gateway.port)
            for connection in [idle, halfHead, stalledBody] {
                #expect(await connection.waitForClose(timeout: .seconds(15)))
            }
            // Nothing was answered: the stalled requests were never handled.
            #expect(!halfHead.received.contains("HTTP/1.1 2") && !stalledBody.received.contains("HTTP/1.1 2"))
        }
    }

    // Finding 6: a slowloris head, one byte at a time, is closed too.
    @Test func closesASlowHead() async throws {
        try await withGateway(configuration: Self.tight) { (gateway: Harness) async throws in
            let connection = try await RawConnection.open(port: gateway.port)
            let started = ContinuousClock.now
            for byte in "GET /healthz HTTP/1.1\r\nHost: example\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                guard (try? await connection.send(String(byte))) != nil, !connection.isClosed else { break }
                try await Task.sleep(for: .milliseconds(300))
            }
            let closed = await connection.waitForClose(timeout: .seconds(5))
            #expect(closed)
            #expect(ContinuousClock.now - started < .seconds(20))
        }
    }

    // Finding 6: a body that trickles in steadily still has a time limit.
    @Test func refusesABodyThatTricklesPastItsTimeLimit() async throws {
        let configuration = Gateway.Configuration(idleTimeout: .seconds(5), bodyTimeout: .seconds(1))
        try await withGateway(configuration: configuration) { (gateway: Harness) async throws in
            let connection = try await RawConnection.open(port: gateway.port)
            try await connection.send(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(gateway.apiKey)\r\nContent-Length: 100\r\n\r\n")
            for _ in 0..<40 where !connection.received.contains("HTTP/1.1") {
                try? await connection.send(" ")
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(await connection.waitFor("HTTP/1.1 408"), "\(connection.received)")
            connection.close()
        }
    }

    // Finding 6: the connection cap.
    @Test func capsOpenConnections() async throws {
        try await withGateway(configuration: .init(maxConnections: 3)) { (gateway: Harness) async throws in
            var held: [RawConnection] = []
            for _ in 0..<3 { held.append(try await RawConnection.open(port: gateway.port)) }
            try await Task.sleep(for: .milliseconds(200))
            let extra = try await RawConnection.open(port: gateway.port)
            #expect(await extra.waitForClose(timeout: .seconds(5)))
            #expect(held.allSatisfy { !$0.isClosed })
            for connection in held { connection.close() }
            // Room again once they are gone.
            #expect(try await eventually { (try? await gateway.send(.GET, "/healthz").status) == 200 })
        }
    }

    // Finding 6: an early answer to `Connection: close` with an unread body closes.
    @Test func closesAfterAnEarlyAnswer() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let connection = try await RawConnection.open(port: gateway.port)
            try await connection.send(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
                    + "wrong\r\nContent-Length: 8388608\r\n\r\n{"
            )
            #expect(await connection.waitFor("HTTP/1.1 401"), "\(connection.received)")
            #expect(await connection.waitForClose(timeout: .seconds(10)))
        }
    }

    // An early answer says in its head that the connection ends, so that a keep-alive client
    // does not send its next request on it; an answer to a whole request keeps it open.
    @Test func anEarlyAnswerSaysConnectionClose() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let early = try await RawConnection.open(port: gateway.port)
            try await early.send(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 100000\r\n\r\n{")
            #expect(await early.waitFor("\r\n\r\n"), "\(early.received)")
            #expect(early.received.hasPrefix("HTTP/1.1 401"), "\(early.received)")
            #expect(early.received.lowercased().contains("\r\nconnection: close\r\n"), "\(early.received)")
            #expect(await early.waitForClose(timeout: .seconds(10)))

            let whole = try await RawConnection.open(port: gateway.port)
            try await whole.send(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 2\r\n\r\n{}")
            #expect(await whole.waitFor("\r\n\r\n"), "\(whole.received)")
            #expect(whole.received.hasPrefix("HTTP/1.1 401"), "\(whole.received)")
            #expect(!whole.received.lowercased().contains("connection: close"), "\(whole.received)")
            whole.close()
        }
    }
}
