import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// `MizanLoad`: a closed-loop load generator for OpenAI-compatible chat completions.
///
/// `MizanLoad --url http://127.0.0.1:8080 --key K --model M --concurrency 32 --requests 4000 [--stream]`
/// keeps `concurrency` requests in flight until `requests` have finished (after `--warmup` more)
/// and prints one JSON line: requests/s, p50/p99 latency (for streams: time to the first chunk
/// and to the end), errors.
@main
struct LoadCommand {
    struct Options {
        var url = "http://127.0.0.1:8080"
        var key: String?
        var model = "mock-model"
        var concurrency = 1
        var requests = 1000
        var warmup = 200
        var stream = false
        var label = ""
        /// `chat/completions` (the default) or `embeddings`.
        var endpoint = "chat/completions"
    }

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var iterator = arguments.makeIterator()
        while let flag = iterator.next() {
            func value() -> String {
                guard let next = iterator.next() else { fail("\(flag) needs a value") }
                return next
            }
            switch flag {
            case "--url": options.url = value()
            case "--key": options.key = value()
            case "--model": options.model = value()
            case "--concurrency": options.concurrency = Int(value()) ?? 1
            case "--requests": options.requests = Int(value()) ?? 1000
            case "--warmup": options.warmup = Int(value()) ?? 0
            case "--stream": options.stream = true
            case "--label": options.label = value()
            case "--endpoint":
                options.endpoint = value()
                guard ["chat/completions", "embeddings"].contains(options.endpoint) else {
                    fail("--endpoint is chat/completions or embeddings")
                }
            case "--help", "-h":
                print(
                    "usage: MizanLoad --url URL [--key K] [--model M] [--concurrency N] [--requests N] [--warmup N] [--stream] [--label L] [--endpoint chat/completions|embeddings]"
                )
                exit(0)
            default: fail("unknown flag \(flag)")
            }
        }
        return options
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("MizanLoad: \(message)\n".utf8))
        exit(2)
    }

    static func main() async throws {
        let options = parse(Array(CommandLine.arguments.dropFirst()))
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(8, options.concurrency * 2)
        configuration.decompression = .disabled
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let body =
            options.endpoint == "embeddings"
            ? #"{"model":"\#(options.model)","input":"benchmark request"}"#
            : #"{"model":"\#(options.model)","messages":[{"role":"user","content":"benchmark request"}],"stream":\#(options.stream)}"#
        var request = HTTPClientRequest(url: options.url + "/v1/" + options.endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key = options.key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(ByteBuffer(string: body))

        _ = try await run(client: client, request: request, total: options.warmup, concurrency: options.concurrency)
        let started = ContinuousClock.now
        let samples = try await run(client: client, request: request, total: options.requests, concurrency: options.concurrency)
        let elapsed = ContinuousClock.now - started
        try await client.shutdown()

        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let first = samples.compactMap(\.first).sorted()
        let whole = samples.compactMap(\.whole).sorted()
        func percentile(_ values: [Double], _ p: Double) -> Double {
            values.isEmpty ? .nan : values[min(values.count - 1, Int((Double(values.count) * p).rounded(.up)) - 1)]
        }
        let result: [String: Any] = [
            "label": options.label,
            "concurrency": options.concurrency,
            "stream": options.stream,
            "requests": whole.count,
            "errors": samples.count - whole.count,
            "rps": Double(whole.count) / seconds,
            "p50_ms": percentile(whole, 0.50),
            "p99_ms": percentile(whole, 0.99),
            "first_p50_ms": percentile(first, 0.50),
            "first_p99_ms": percentile(first, 0.99),
        ]
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    struct Sample: Sendable {
        var first: Double?
        var whole: Double?
    }

    static func run(client: HTTPClient, request: HTTPClientRequest, total: Int, concurrency: Int) async throws -> [Sample] {
        guard total > 0 else { return [] }
        return try await withThrowingTaskGroup(of: [Sample].self) { group in
            let counter = Counter(total)
            for _ in 0..<concurrency {
                group.addTask {
                    var samples: [Sample] = []
                    while counter.take() {
                        samples.append(await once(client: client, request: request))
                    }
                    return samples
                }
            }
            var all: [Sample] = []
            for try await samples in group { all += samples }
            return all
        }
    }

    static func once(client: HTTPClient, request: HTTPClientRequest) async -> Sample {
        let start = ContinuousClock.now
        func ms(_ instant: ContinuousClock.Instant) -> Double {
            let d = instant - start
            return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        }
        do {
            let response = try await client.execute(request, timeout: .seconds(60))
            guard response.status == .ok else {
                let body = try? await response.body.collect(upTo: 1 << 20)
                report("status \(response.status.code): \(body.map { String(buffer: $0).prefix(200) } ?? "")")
                return Sample(first: nil, whole: nil)
            }
            var first: Double?
            for try await _ in response.body where first == nil { first = ms(.now) }
            return Sample(first: first, whole: ms(.now))
        } catch {
            report("\(error)")
            return Sample(first: nil, whole: nil)
        }
    }

    /// Writes a failed request's reason to standard error (the first few only).
    static func report(_ reason: String) {
        guard reported.add(1, ordering: .relaxed).newValue <= 5 else { return }
        FileHandle.standardError.write(Data("MizanLoad: request failed: \(reason)\n".utf8))
    }

    static let reported = Atomic<Int>(0)

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var remaining: Int
        init(_ total: Int) { remaining = total }
        func take() -> Bool {
            lock.lock()
            defer { lock.unlock() }
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
    }
}
