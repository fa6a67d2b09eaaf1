import Foundation
import MizanCore
import MizanGateway
import MizanStore
import MizanTestSupport
import Testing

@Suite("Agent API and agent-served requests over loopback")
struct AgentPathTests {
    @Test func agentServesANonStreamRequestAndUsageIsRecordedOnce() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["local-model"])
            async let answer = gateway.chat(model: "local-model", headers: [("X-Request-Id", "agent-req-1")])
            let jobs = try await gateway.lease(token: node.token)
            let job = try #require(jobs.first)
            #expect(job.model == "local-model")
            #expect(job.requestID == "agent-req-1")
            #expect(String(decoding: job.body, as: UTF8.self).contains("say two words"))
            let completed = try await gateway.complete(job, token: node.token)
            #expect(completed.status == 200)
            #expect(completed.json["state"] as? String == "succeeded")
            let result = try await answer
            #expect(result.status == 200)
            let completion = try JSONDecoder().decode(ChatCompletionResponse.self, from: result.body)
            #expect(completion.choices.first?.message.content == "from the node")
            // A second completion of the same attempt is refused, and usage counts once.
            let again = try await gateway.complete(job, token: node.token)
            #expect(again.status == 409)
            #expect(
                try await eventually {
                    let summary = try await gateway.store.usageSummary()
                    return summary.first?.requests == 1 && summary.first?.promptTokens == 7 && summary.first?.completionTokens == 3
                })
        }
    }

    @Test func staleAttemptAndOtherNodeAreFenced() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let first = try await gateway.registerNode(models: ["m"], name: "first")
            let second = try await gateway.registerNode(models: ["m"], name: "second")
            async let answer = gateway.chat(model: "m")
            let job = try #require(try await gateway.lease(token: first.token).first)
            // A retryable failure requeues the job; the second node takes attempt 2.
            let failure = AgentWire.FailRequest(
                attempt: job.attempt, failure: .init(code: "provider_unreachable", message: "local server down", retryable: true))
            let failed = try await gateway.send(
                .POST, "/agent/v1/jobs/\(job.jobID)/fail", token: first.token,
                body: String(decoding: try AgentWire.encoder().encode(failure), as: UTF8.self))
            #expect(failed.status == 200)
            #expect(failed.json["state"] as? String == "accepted")
            let retried = try #require(try await gateway.lease(token: second.token).first)
            #expect(retried.jobID == job.jobID && retried.attempt == job.attempt + 1)
            let late = try await gateway.complete(job, token: first.token)
            #expect(late.status == 409)
            #expect(late.errorCode == "lease_conflict")
            let wrongNode = try await gateway.complete(retried, token: first.token)
            #expect(wrongNode.status == 409)
            #expect(try await gateway.complete(retried, token: second.token).status == 200)
            #expect(try await answer.status == 200)
        }
    }

    @Test func reportBatchAppliesEachReportFenced() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"], maxConcurrency: 4)
            async let one = gateway.chat(model: "m")
            async let two = gateway.chat(model: "m")
            var jobs: [AgentWire.Assignment] = []
            while jobs.count < 2 { jobs += try await gateway.lease(token: node.token, limit: 2) }
            let result = try JSONEncoder().encode(ChatCompletionResponse(id: "x", created: 0, model: "m", choices: [], usage: nil))
            let batch = AgentWire.ReportBatch(reports: [
                .succeeded(.init(jobID: jobs[0].jobID, attempt: jobs[0].attempt), result: result, usage: nil),
                .failed(
                    .init(jobID: jobs[1].jobID, attempt: jobs[1].attempt),
                    .init(code: "bad_output", message: "the model crashed", retryable: false)),
                .succeeded(.init(jobID: jobs[0].jobID, attempt: jobs[0].attempt + 5), result: result, usage: nil),
            ])
            let answer = try await gateway.send(
                .POST, "/agent/v1/reports", token: node.token, body: String(decoding: try AgentWire.encoder().encode(batch), as: UTF8.self))
            #expect(answer.status == 200)
            let outcomes = try AgentWire.decoder().decode(AgentWire.ReportBatchResponse.self, from: answer.body).outcomes
            #expect(outcomes.map(\.state) == [.succeeded, .failed, nil])
            #expect(outcomes[2].error?.code == "lease_conflict")
            let statuses = [try await one.status, try await two.status].sorted()
            #expect(statuses == [200, 502])
        }
    }

    @Test func heartbeatTellsTheNodeToAbortACancelledJob() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            let client = Task { try await gateway.chat(model: "m") }
            let job = try #require(try await gateway.lease(token: node.token).first)
            client.cancel()
            _ = await client.result
            #expect(
                try await eventually {
                    try await gateway.store.job(job.jobID)?.errorCode == JobErrorCode.cancelled
                })
            let heartbeat = AgentWire.HeartbeatRequest(
                report: NodeReport(models: ["m"], maxConcurrency: 4, inFlight: 1),
                running: [.init(jobID: job.jobID, attempt: job.attempt)]
            )
            let answer = try await gateway.send(
                .POST, "/agent/v1/heartbeat", token: node.token,
                body: String(decoding: try AgentWire.encoder().encode(heartbeat), as: UTF8.self))
            #expect(answer.status == 200)
            let decoded = try AgentWire.decoder().decode(AgentWire.HeartbeatResponse.self, from: answer.body)
            #expect(decoded.abort == [.init(jobID: job.jobID, attempt: job.attempt)])
        }
    }

    @Test func aHeartbeatsLoadedModelsAreCheckedKeptAndListed() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m", "n"])
            func beat(_ loaded: String) async throws -> HTTPAnswer {
                let body =
                    #"{"report":{"models":["m","n"],"maxConcurrency":2,"health":"healthy","inFlight":0,"labels":{}\#(loaded)},"running":[]}"#
                return try await gateway.send(.POST, "/agent/v1/heartbeat", token: node.token, body: body)
            }
            let accepted = try await beat(#","loadedModels":["n"]"#)
            #expect(accepted.status == 200, "\(accepted.text)")
            #expect((accepted.json["node"] as? [String: Any])?["loadedModels"] as? [String] == ["n"])
            let listed = try await gateway.send(.GET, "/admin/v1/nodes", token: Harness.adminToken)
            let entry = try #require((listed.json["data"] as? [[String: Any]])?.first)
            #expect(entry["loadedModels"] as? [String] == ["n"])

            let refusals = [
                #","loadedModels":[""]"#,
                #","loadedModels":["a\u0007b"]"#,
                #","loadedModels":["\#(String(repeating: "x", count: 257))"]"#,
                #","loadedModels":[\#((0...NodeReport.maxLoadedModels).map { "\"m\($0)\"" }.joined(separator: ","))]"#,
            ]
            for refusal in refusals {
                let answer = try await beat(refusal)
                #expect(answer.status == 400 && answer.errorMessage?.contains("loadedModels") == true, "\(answer.text)")
            }
            let id = try #require(NodeID(node.id))
            #expect(try await gateway.store.node(id)?.loadedModels == ["n"], "a refused report changes nothing")
            // A report that does not know (an older agent, or a probe that failed) leaves them unknown.
            #expect(try await beat("").status == 200)
            #expect(try await gateway.store.node(id)?.loadedModels == [])
        }
    }

    @Test func busyCapacityAnswers429AfterTheQueueWait() async throws {
        try await withGateway(configuration: .init(maxQueueWait: .milliseconds(300))) { (gateway: Harness) async throws in
            _ = try await gateway.registerNode(models: ["m"])
            let answer = try await gateway.chat(model: "m")
            #expect(answer.status == 429)
            #expect(answer.errorCode == "no_capacity")
            #expect(try await gateway.store.jobs(state: .accepted, limit: 10).isEmpty)
        }
    }

    @Test func deadlineHeaderAnswers504WhenTheNodeIsTooSlow() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            async let leased = gateway.lease(token: node.token, wait: 20)
            // The node waits in its lease call before the request comes, so it takes it at once.
            #expect(try await eventually { gateway.gateway.dispatcher.waitingLeasers == 1 })
            async let answer = gateway.chat(model: "m", headers: [("X-Mizan-Deadline-Ms", "5000")])
            let job = try #require(try await leased.first)
            let result = try await answer
            #expect(result.status == 504)
            #expect(result.errorType == "timeout_error")
            #expect(try await gateway.complete(job, token: node.token).status == 409)
        }
    }

    @Test func knownModelWithoutHealthyNodeIs503() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            #expect(try await gateway.send(.DELETE, "/admin/v1/nodes/\(node.id)", token: Harness.adminToken).status == 200)
            let answer = try await gateway.chat(model: "m")
            #expect(answer.status == 503)
            #expect(answer.errorCode == "no_healthy_node")
            // A revoked node's token stops working.
            #expect(try await gateway.send(.POST, "/agent/v1/lease", token: node.token, body: #"{"limit":1}"#).status == 401)
        }
    }

    @Test func streamsThroughTheAgentAPI() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            async let answer = gateway.chat(model: "m", stream: true)
            let job = try #require(try await gateway.lease(token: node.token).first)
            #expect(job.stream)
            let chunk = ChatCompletionChunk(
                id: "c", created: 0, model: "m", choices: [.init(index: 0, delta: .init(content: "streamed"), finishReason: nil)])
            let usage = ChatCompletionChunk(
                id: "c", created: 0, model: "m", choices: [], usage: ChatUsage(promptTokens: 2, completionTokens: 1))
            let frames =
                try [chunk, usage].map { "data: \(String(decoding: try JSONEncoder().encode($0), as: UTF8.self))\n\n" }.joined()
                + "data: [DONE]\n\n"
            let stale = try await gateway.send(
                .POST, "/agent/v1/jobs/\(job.jobID)/stream?attempt=\(job.attempt + 1)", token: node.token, body: frames)
            #expect(stale.status == 409)
            let posted = try await gateway.send(
                .POST, "/agent/v1/jobs/\(job.jobID)/stream?attempt=\(job.attempt)", token: node.token, body: frames)
            #expect(posted.status == 200)
            #expect(try await gateway.complete(job, token: node.token).status == 200)
            let result = try await answer
            #expect(result.status == 200)
            #expect(result.headers["Content-Type"].first == "text/event-stream")
            #expect(result.text.contains("streamed"))
            #expect(result.text.hasSuffix("data: [DONE]\n\n"))
            #expect(try await eventually { try await gateway.store.usageSummary().first?.completionTokens == 1 })
        }
    }

    @Test func streamingJobThatFailsBeforeOutputAnswersWithAnErrorStatus() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            async let answer = gateway.chat(model: "m", stream: true)
            let job = try #require(try await gateway.lease(token: node.token).first)
            let failure = AgentWire.FailRequest(
                attempt: job.attempt, failure: .init(code: "provider_rejected", message: "bad request", retryable: false))
            _ = try await gateway.send(
                .POST, "/agent/v1/jobs/\(job.jobID)/fail", token: node.token,
                body: String(decoding: try AgentWire.encoder().encode(failure), as: UTF8.self))
            let result = try await answer
            #expect(result.status == 502)
            #expect(result.errorCode == "upstream_error")
        }
    }

    @Test func clientGoingAwayCancelsTheJob() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            // The client gives up once its request is queued, before any node answers.
            let client = Task { try await gateway.chat(model: "m") }
            #expect(try await eventually { try await !gateway.store.jobs(state: .accepted, limit: 10).isEmpty })
            client.cancel()
            await #expect(throws: (any Error).self) { _ = try await client.value }
            #expect(
                try await eventually {
                    try await gateway.store.jobs(state: .failed, limit: 10).first?.errorCode == JobErrorCode.cancelled
                })
            #expect(try await gateway.lease(token: node.token, wait: 0).isEmpty)
        }
    }

    @Test func agentAPIRefusesBadBodies() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            #expect(try await gateway.send(.POST, "/agent/v1/lease", token: node.token, body: #"{"limit":-1}"#).status == 400)
            #expect(try await gateway.send(.POST, "/agent/v1/lease", token: node.token, body: #"{"limit":"many"}"#).status == 400)
            #expect(try await gateway.send(.POST, "/agent/v1/jobs/not-an-id/complete", token: node.token, body: "{}").status == 400)
            let unknown = JobID()
            let complete = #"{"attempt":1,"result":"e30="}"#
            #expect(try await gateway.send(.POST, "/agent/v1/jobs/\(unknown)/complete", token: node.token, body: complete).status == 404)
            let created = try await gateway.send(.POST, "/admin/v1/nodes", token: Harness.adminToken, body: #"{"name":"n"}"#)
            let registration = try #require(created.json["registrationToken"] as? String)
            let badReport = #"{"report":{"models":["m"],"maxConcurrency":0,"health":"healthy","inFlight":0,"labels":{}}}"#
            #expect(try await gateway.send(.POST, "/agent/v1/register", token: registration, body: badReport).status == 400)
        }
    }
}
