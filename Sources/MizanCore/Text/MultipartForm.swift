import Foundation

/// A `multipart/form-data` body (RFC 7578), read to find and rewrite its text fields (`model`)
/// and written back with the same parts, byte for byte, in a canonical form: no preamble or
/// epilogue, so that the body's first line names its boundary and the body alone is enough to
/// send it on (a job keeps only its body).
///
/// Reading is bounded: at most ``maxParts`` parts, each part's headers at most
/// ``maxHeaderBytes``; the body's own size is bounded by whoever read it.
public struct MultipartForm: Sendable, Equatable {
    /// One part of the form.
    public struct Part: Sendable, Equatable {
        /// Its header lines, as sent (without the line ends).
        public var headers: [String]
        /// Its content.
        public var body: Data
        /// The form field's name (`Content-Disposition: form-data; name="…"`).
        public var name: String?
        /// The file name, for a file part.
        public var filename: String?
    }

    /// The most parts read.
    public static let maxParts = 64
    /// The most bytes of one part's headers.
    public static let maxHeaderBytes = 8 << 10

    /// The boundary between parts.
    public let boundary: String
    /// The parts, in order.
    public private(set) var parts: [Part]

    /// The boundary a `Content-Type: multipart/form-data; boundary=…` header names.
    /// - Parameter contentType: The header's value.
    /// - Returns: The boundary, or `nil` when the header is not `multipart/form-data` with one.
    public static func boundary(fromContentType contentType: String) -> String? {
        let fields = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let kind = fields.first, kind.lowercased() == "multipart/form-data" else { return nil }
        for field in fields.dropFirst() {
            let pair = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, pair[0].lowercased() == "boundary" else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            // RFC 2046: 1 to 70 printable characters, a space allowed but not last.
            guard (1...70).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 32 && $0 < 127 }), value.last != " " else {
                return nil
            }
            return value
        }
        return nil
    }

    /// Reads a form.
    /// - Parameters:
    ///   - body: The body.
    ///   - boundary: The boundary its `Content-Type` names.
    /// - Throws: ``MizanError`` `badRequest` when the body is not a form with that boundary.
    public init(body: Data, boundary: String) throws {
        self.boundary = boundary
        let bytes = [UInt8](body)
        let delimiter = Array("--\(boundary)".utf8)
        var parts: [Part] = []
        guard var start = Self.find(delimiter, in: bytes, from: 0) else {
            throw MizanError(.badRequest, "The multipart body does not contain its boundary.")
        }
        while true {
            var cursor = start + delimiter.count
            // The closing delimiter: `--BOUNDARY--`.
            if cursor + 1 < bytes.count, bytes[cursor] == UInt8(ascii: "-"), bytes[cursor + 1] == UInt8(ascii: "-") { break }
            guard cursor + 1 < bytes.count, bytes[cursor] == 13, bytes[cursor + 1] == 10 else {
                throw MizanError(.badRequest, "The multipart body is malformed: a boundary is not followed by a line end.")
            }
            cursor += 2
            guard let headerEnd = Self.find([13, 10, 13, 10], in: bytes, from: cursor), headerEnd - cursor <= Self.maxHeaderBytes
            else {
                throw MizanError(.badRequest, "The multipart body is malformed: a part's headers do not end (or are too long).")
            }
            let headerText = String(decoding: bytes[cursor..<headerEnd], as: UTF8.self)
            let headers = headerText.isEmpty ? [] : headerText.components(separatedBy: "\r\n")
            let contentStart = headerEnd + 4
            guard let next = Self.find([13, 10] + delimiter, in: bytes, from: contentStart) else {
                throw MizanError(.badRequest, "The multipart body is malformed: it does not end with its closing boundary.")
            }
            guard parts.count < Self.maxParts else {
                throw MizanError(.badRequest, "The multipart body has more than \(Self.maxParts) parts.")
            }
            let disposition = Self.disposition(headers)
            parts.append(
                Part(headers: headers, body: Data(bytes[contentStart..<next]), name: disposition["name"], filename: disposition["filename"])
            )
            start = next + 2
        }
        self.parts = parts
    }

    /// Reads a form written by ``encoded``: its first line names the boundary.
    /// - Parameter canonical: The body.
    /// - Returns: The form, or `nil` when the body is not one.
    public init?(canonical body: Data) {
        guard let boundary = Self.boundary(ofCanonical: body), let form = try? MultipartForm(body: body, boundary: boundary) else {
            return nil
        }
        self = form
    }

    /// The boundary a canonical body starts with (`--BOUNDARY\r\n`).
    /// - Parameter body: A body written by ``encoded``.
    /// - Returns: The boundary, or `nil` when the body does not start with one.
    public static func boundary(ofCanonical body: Data) -> String? {
        guard body.starts(with: Array("--".utf8)), let end = body.prefix(80).firstIndex(of: 13) else { return nil }
        let boundary = String(decoding: body[(body.startIndex + 2)..<end], as: UTF8.self)
        return boundary.isEmpty ? nil : boundary
    }

    /// The text of a field, when the form has one by that name that is not a file.
    /// - Parameter name: The field's name.
    public func text(_ name: String) -> String? {
        parts.first { $0.name == name && $0.filename == nil }.map { String(decoding: $0.body, as: UTF8.self) }
    }

    /// The form with a text field's content replaced (the first field by that name).
    /// - Parameters:
    ///   - name: The field's name.
    ///   - text: Its new content.
    /// - Returns: The changed form (unchanged when it has no such field).
    public func replacing(_ name: String, with text: String) -> MultipartForm {
        var form = self
        if let index = form.parts.firstIndex(where: { $0.name == name && $0.filename == nil }) {
            form.parts[index].body = Data(text.utf8)
        }
        return form
    }

    /// The form written out: each part's headers and content as read, between boundaries, with
    /// no preamble or epilogue.
    public var encoded: Data {
        var out = Data()
        for part in parts {
            out.append(contentsOf: Array("--\(boundary)\r\n".utf8))
            for header in part.headers { out.append(contentsOf: Array("\(header)\r\n".utf8)) }
            out.append(contentsOf: [13, 10])
            out.append(part.body)
            out.append(contentsOf: [13, 10])
        }
        out.append(contentsOf: Array("--\(boundary)--\r\n".utf8))
        return out
    }

    /// The bytes of the parts that are not files: what a prompt's size is estimated from.
    public var textBytes: Int { parts.filter { $0.filename == nil }.reduce(0) { $0 + $1.body.count } }

    /// The parameters of a part's `Content-Disposition` header (`name`, `filename`).
    static func disposition(_ headers: [String]) -> [String: String] {
        guard let line = headers.first(where: { $0.lowercased().hasPrefix("content-disposition:") }) else { return [:] }
        var parameters: [String: String] = [:]
        for field in line.dropFirst("content-disposition:".count).split(separator: ";").dropFirst() {
            let pair = field.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            parameters[pair[0].lowercased()] = value
        }
        return parameters
    }

    /// The first index of `needle` in `haystack` at or after `start`.
    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        let first = needle[0]
        var index = start
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}
