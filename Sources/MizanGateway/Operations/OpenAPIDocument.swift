import Foundation
import Yams

/// The gateway's OpenAPI 3.1 document, embedded in the binary and served as JSON at
/// `/openapi.json`. There is one copy, `Docs/openapi.yaml`: the target's
/// `Resources/openapi.yaml` is a link to it.
public enum OpenAPIDocument {
    /// The document as written, YAML.
    public static var yaml: String { String(decoding: PackageResources.openapi_yaml, as: UTF8.self) }

    /// The document as JSON, made once.
    public static let json: Data = {
        guard let value = try? Yams.load(yaml: yaml),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])
        else {
            preconditionFailure("the embedded OpenAPI document is not valid YAML")
        }
        return data
    }()
}
