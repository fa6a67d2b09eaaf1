/// This build of Mizan.
public enum MizanVersion {
    /// The version, as `--version` prints it and agents report it (`mizan.version` label).
    public static let current = "0.9.0"

    /// The label in which an agent reports its version to the gateway.
    public static let labelName = "mizan.version"
}
