/// The console's stylesheet and script, embedded in the binary at build time.
enum ConsoleAssets {
    static let css = String(decoding: PackageResources.console_css, as: UTF8.self)
    static let javascript = String(decoding: PackageResources.console_js, as: UTF8.self)
}
