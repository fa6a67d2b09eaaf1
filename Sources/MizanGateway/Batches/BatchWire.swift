import Foundation
import MizanCore

/// The JSON objects of the Files and Batch APIs, as OpenAI's SDKs read them.
enum BatchWire {
    /// A file object.
    struct File: Encodable {
        var id: String
        var object = "file"
        var bytes: Int
        var created_at: Int
        var filename: String
        var purpose: String
        var status = "processed"
        var expires_at: Int? = nil
        var status_details: String? = nil

        init(_ file: StoredFile) {
            id = file.id
            bytes = file.bytes
            created_at = Int(file.createdAt.timeIntervalSince1970)
            filename = file.filename
            purpose = file.purpose
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(id, forKey: .id)
            try container.encode(object, forKey: .object)
            try container.encode(bytes, forKey: .bytes)
            try container.encode(created_at, forKey: .created_at)
            try container.encode(filename, forKey: .filename)
            try container.encode(purpose, forKey: .purpose)
            try container.encode(status, forKey: .status)
            try container.encodeNil(forKey: .expires_at)
            try container.encodeNil(forKey: .status_details)
        }

        enum Keys: String, CodingKey { case id, object, bytes, created_at, filename, purpose, status, expires_at, status_details }
    }

    /// A deleted file's answer.
    struct Deleted: Encodable {
        var id: String
        var object = "file"
        var deleted = true
    }

    /// A page of a list.
    struct Page<Item: Encodable>: Encodable {
        var object = "list"
        var data: [Item]
        var first_id: String?
        var last_id: String?
        var has_more: Bool
    }

    /// A batch object.
    struct BatchObject: Encodable {
        let batch: Batch

        init(_ batch: Batch) { self.batch = batch }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            func time(_ date: Date?, _ key: Keys) throws {
                if let date {
                    try container.encode(Int(date.timeIntervalSince1970), forKey: key)
                } else {
                    try container.encodeNil(forKey: key)
                }
            }
            try container.encode(batch.id, forKey: .id)
            try container.encode("batch", forKey: .object)
            try container.encode("/v1" + batch.endpoint.path, forKey: .endpoint)
            if batch.failures.isEmpty {
                try container.encodeNil(forKey: .errors)
            } else {
                try container.encode(
                    Errors(data: batch.failures.map { Errors.Item(code: $0.code, message: $0.message, line: $0.line) }), forKey: .errors)
            }
            try container.encode(batch.inputFileID, forKey: .input_file_id)
            try container.encode("24h", forKey: .completion_window)
            try container.encode(batch.status.rawValue, forKey: .status)
            try container.encode(batch.outputFileID, forKey: .output_file_id)
            try container.encode(batch.errorFileID, forKey: .error_file_id)
            try time(batch.createdAt, .created_at)
            try time(batch.inProgressAt, .in_progress_at)
            try time(batch.expiresAt, .expires_at)
            try time(batch.finalizingAt, .finalizing_at)
            try time(batch.completedAt, .completed_at)
            try time(batch.failedAt, .failed_at)
            try time(batch.expiredAt, .expired_at)
            try time(batch.cancellingAt, .cancelling_at)
            try time(batch.cancelledAt, .cancelled_at)
            try container.encode(
                Counts(total: batch.counts.total, completed: batch.counts.completed, failed: batch.counts.failed), forKey: .request_counts)
            try container.encode(batch.metadata, forKey: .metadata)
            try container.encode(Served(nodes: batch.counts.byNodes, routes: batch.counts.byRoutes), forKey: .mizan_served)
            try container.encode(batch.apiKeyID, forKey: .mizan_key)
        }

        struct Counts: Encodable {
            var total: Int
            var completed: Int
            var failed: Int
        }

        /// Where its lines ran (Mizan's own member).
        struct Served: Encodable {
            var nodes: Int
            var routes: Int
        }

        struct Errors: Encodable {
            struct Item: Encodable {
                var code: String
                var message: String
                var param: String? = nil
                var line: Int?
            }
            var object = "list"
            var data: [Item]
        }

        enum Keys: String, CodingKey {
            case id, object, endpoint, errors, input_file_id, completion_window, status, output_file_id, error_file_id, created_at,
                in_progress_at, expires_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at,
                request_counts, metadata, mizan_served, mizan_key
        }
    }

    /// `POST /v1/batches`.
    struct Create: Decodable {
        var input_file_id: String
        var endpoint: String
        var completion_window: String
        var metadata: [String: String]?
    }
}
