import Foundation

/// A file of the Files API (`/v1/files`): a batch's input, uploaded by a client, or a batch's
/// output or error file, written by the gateway as the batch's lines finish. Every file belongs
/// to the API key that uploaded it (or whose batch wrote it); another key never sees it.
public struct StoredFile: Sendable, Equatable, Codable {
    /// What a file holds.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// A client's upload (`purpose: batch`): one request per line.
        case upload
        /// A batch's answers, one line per request that succeeded.
        case output
        /// A batch's failures, one line per request that did not.
        case error
    }

    /// `file-…`.
    public var id: String
    /// The key that owns it.
    public var apiKeyID: String
    /// `batch` for an upload, `batch_output` for what a batch wrote.
    public var purpose: String
    /// The name the client gave (or `batch_…_output.jsonl`).
    public var filename: String
    /// Its size in bytes.
    public var bytes: Int
    /// Its lines.
    public var lines: Int
    /// When it was made.
    public var createdAt: Date
    /// What it holds.
    public var kind: Kind
    /// The batch that wrote it (output and error files).
    public var batchID: String?

    /// Creates a file's record.
    public init(
        id: String = StoredFile.newID(), apiKeyID: String, purpose: String, filename: String, bytes: Int, lines: Int, createdAt: Date,
        kind: Kind = .upload, batchID: String? = nil
    ) {
        self.id = id
        self.apiKeyID = apiKeyID
        self.purpose = purpose
        self.filename = filename
        self.bytes = bytes
        self.lines = lines
        self.createdAt = createdAt
        self.kind = kind
        self.batchID = batchID
    }

    /// A new id: `file-` and 24 hex digits, time-ordered.
    public static func newID() -> String { "file-" + BatchIDs.hex() }
}

/// One line of an uploaded batch input file, as stored: its number (from 1), its `custom_id`,
/// its `url` and the line as uploaded (``BatchInput`` reads its `body` when it runs).
public struct InputLine: Sendable, Equatable {
    /// Its number in the file, from 1 (blank lines are not numbered).
    public var number: Int
    /// The client's `custom_id`, unique in the file.
    public var customID: String
    /// The line's `url` (`/v1/chat/completions` …).
    public var url: String
    /// The line as uploaded, without its line end.
    public var raw: Data

    /// Creates a line.
    public init(number: Int, customID: String, url: String, raw: Data) {
        self.number = number
        self.customID = customID
        self.url = url
        self.raw = raw
    }
}

/// The ids of batch objects: time-ordered, so that text order is creation order (lists page
/// with `after`).
public enum BatchIDs {
    /// 24 lowercase hex digits: 12 of milliseconds since 1970, 12 random.
    public static func hex(at date: Date = Date()) -> String {
        let milliseconds = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        let time = String(milliseconds & 0xFFFF_FFFF_FFFF, radix: 16)
        let random = String(IDRandom.next() & 0xFFFF_FFFF_FFFF, radix: 16)
        return String(repeating: "0", count: 12 - time.count) + time + String(repeating: "0", count: 12 - random.count) + random
    }
}
