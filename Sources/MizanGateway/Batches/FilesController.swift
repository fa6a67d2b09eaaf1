import Foundation
import HTTPTypes
import Hummingbird
import MizanCore
import MizanStore
import NIOCore
import Synchronization

/// The Files API under `/v1/files`, as OpenAI's, for batch input and output: upload a JSONL
/// file (`purpose=batch`), list, read, download and delete. A file belongs to the key that
/// uploaded it (or whose batch wrote it); another key gets 404.
///
/// Files live in the store (SQLite, PostgreSQL, memory), one row per line: every instance on
/// a shared store sees them, one backup keeps them with the batches that use them, and a batch
/// reads its input a page of lines at a time instead of holding the file.
struct FilesController: Sendable {
    let client: ClientController
    let store: any BatchStore
    /// The largest upload.
    let maxFileBytes: Int

    /// Uploads being read at once on this instance: each may hold up to `maxFileBytes`.
    let uploading = Uploads()

    /// Counts uploads in progress, to bound the memory they hold.
    final class Uploads: Sendable {
        /// The most uploads read at once.
        static let maximum = 2
        private let count = Atomic(0)

        /// Takes a place, or refuses with 429 when every place is taken.
        func enter() throws {
            guard count.add(1, ordering: .relaxed).newValue <= Self.maximum else {
                count.subtract(1, ordering: .relaxed)
                var error = MizanError(.overloaded, "Too many files are being uploaded at once; try again in a moment.")
                error.retryAfter = 1
                throw error
            }
        }

        func leave() { count.subtract(1, ordering: .relaxed) }
    }

    func addRoutes(to router: RouterGroup<GatewayRequestContext>) {
        router.post("/v1/files") { request, context in
            try uploading.enter()
            defer { uploading.leave() }
            return try await upload(request, context: context)
        }
        router.get("/v1/files") { request, context in
            let key = try await client.authenticate(request, record: context.record)
            let parameters = request.uri.queryParameters
            let limit = try Self.limit(parameters.get("limit"), upTo: 10_000)
            if let purpose = parameters.get("purpose"), purpose != "batch", purpose != "batch_output" {
                return try JSONResponse.json(BatchWire.Page<BatchWire.File>(data: [], first_id: nil, last_id: nil, has_more: false))
            }
            // A purpose filters the store's pages (at most 20 of them) until the page is full.
            let purpose = parameters.get("purpose")
            var files: [StoredFile] = []
            var after = parameters.get("after")
            for _ in 0..<20 {
                let page = try await store.files(apiKeyID: key.id, after: after, limit: limit + 1)
                files += page.filter { purpose == nil || $0.purpose == purpose }
                guard files.count <= limit, page.count == limit + 1, let last = page.last else { break }
                after = last.id
            }
            let page = files.prefix(limit).map(BatchWire.File.init)
            return try JSONResponse.json(
                BatchWire.Page(data: Array(page), first_id: page.first?.id, last_id: page.last?.id, has_more: files.count > limit))
        }
        router.get("/v1/files/:id") { request, context in
            try JSONResponse.json(BatchWire.File(try await owned(request, context: context)))
        }
        router.get("/v1/files/:id/content") { request, context in
            let file = try await owned(request, context: context)
            return Self.content(of: file, store: store)
        }
        router.delete("/v1/files/:id") { request, context in
            let key = try await client.authenticate(request, record: context.record)
            let id = context.parameters.get("id") ?? ""
            guard try await store.deleteFile(id, apiKeyID: key.id) else { throw Self.noFile(id) }
            return try JSONResponse.json(BatchWire.Deleted(id: id))
        }
    }

    /// `POST /v1/files`: a multipart form with `purpose=batch` and the JSONL `file`.
    private func upload(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let key = try await client.authenticate(request, record: context.record)
        guard let boundary = request.headers[.contentType].flatMap(MultipartForm.boundary(fromContentType:)) else {
            throw MizanError(.badRequest, "Upload a file as multipart/form-data with the fields 'purpose' and 'file'.")
        }
        let body = try await BodyReader.collect(request.body, limit: maxFileBytes, timeout: .seconds(600))
        let form = try MultipartForm(body: body, boundary: boundary)
        guard let purposePart = form.parts.first(where: { $0.name == "purpose" }) else {
            throw MizanError(.badRequest, "The form needs a 'purpose' field; Mizan takes files with purpose 'batch'.")
        }
        let purpose = String(decoding: purposePart.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard purpose == "batch" else {
            throw MizanError(
                .badRequest, "The purpose '\(SafeText.escaped(purpose))' is not supported; Mizan takes files with purpose 'batch'.")
        }
        guard let filePart = form.parts.first(where: { $0.name == "file" }) else {
            throw MizanError(.badRequest, "The form needs a 'file' field with the JSONL content.")
        }
        let lines = try BatchInput.lines(of: filePart.body, maxLineBytes: client.limits.maxBodyBytes)
        let name = String((filePart.filename ?? "batch.jsonl").prefix(255))
        let file = StoredFile(
            apiKeyID: key.id, purpose: purpose, filename: name, bytes: lines.reduce(0) { $0 + $1.raw.count + 1 }, lines: lines.count,
            createdAt: Date())
        return try JSONResponse.json(BatchWire.File(try await store.createFile(file, lines: lines)))
    }

    /// The key's file named in the path.
    private func owned(_ request: Request, context: GatewayRequestContext) async throws -> StoredFile {
        let key = try await client.authenticate(request, record: context.record)
        let id = context.parameters.get("id") ?? ""
        guard let file = try await store.file(id, apiKeyID: key.id) else { throw Self.noFile(id) }
        return file
    }

    /// A file's lines, streamed a page at a time (`application/jsonl`).
    static func content(of file: StoredFile, store: any BatchStore) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/jsonl"
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                var after = 0
                while true {
                    let page = try await store.fileLines(file, after: after, limit: 1000)
                    guard let last = page.last else { break }
                    var buffer = ByteBuffer()
                    for entry in page {
                        buffer.writeBytes(entry.line)
                        buffer.writeInteger(UInt8(ascii: "\n"))
                    }
                    try await writer.write(buffer)
                    after = last.number
                }
                try await writer.finish(nil)
            })
    }

    static func noFile(_ id: String) -> MizanError {
        MizanError(.notFound, "No such File object: \(SafeText.escaped(id)).")
    }

    /// A list's `limit`: 1 to `upTo` (20 when absent).
    static func limit(_ text: String?, upTo maximum: Int) throws -> Int {
        guard let text else { return 20 }
        guard let limit = Int(text), (1...maximum).contains(limit) else {
            throw MizanError(.badRequest, "limit must be a whole number from 1 to \(maximum).")
        }
        return limit
    }
}
