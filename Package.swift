// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "mizan",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MizanCore", targets: ["MizanCore"]),
        .library(name: "MizanStore", targets: ["MizanStore"]),
        .library(name: "MizanStorePostgres", targets: ["MizanStorePostgres"]),
        .library(name: "MizanStoreSQLite", targets: ["MizanStoreSQLite"]),
        .library(name: "MizanStoreTesting", targets: ["MizanStoreTesting"]),
        .library(name: "MizanTesting", targets: ["MizanTesting"]),
        .library(name: "MizanDispatch", targets: ["MizanDispatch"]),
        .library(name: "MizanPostgresTesting", targets: ["MizanPostgresTesting"]),
        .library(name: "MizanProvider", targets: ["MizanProvider"]),
        .library(name: "MizanGateway", targets: ["MizanGateway"]),
        .library(name: "MizanConsole", targets: ["MizanConsole"]),
        .library(name: "MizanMockProvider", targets: ["MizanMockProvider"]),
        .library(name: "MizanAgent", targets: ["MizanAgent"]),
        .library(name: "MizanLogging", targets: ["MizanLogging"]),
        .executable(name: "mizan-agent", targets: ["mizan-agent"]),
        .executable(name: "mizan-mock-provider", targets: ["mizan-mock-provider"]),
        .executable(name: "mizan-gateway", targets: ["mizan-gateway"]),
        .executable(name: "mizan", targets: ["mizan"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        // NIOHTTPTypes: the HTTP parts Hummingbird's channel pipeline carries (ConnectionWatcher).
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // `swift package generate-documentation --target MizanDispatch` builds the DocC catalogs.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
    ],
    targets: [
        .target(
            name: "MizanCore",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanStore",
            dependencies: [
                "MizanCore"
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanStorePostgres",
            dependencies: [
                "MizanStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "MizanCore",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanStoreSQLite",
            dependencies: [
                // Its bundled SQLite (the VaporCSQLite module) is what the store runs on.
                "MizanStore",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "MizanCore",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanStoreTesting",
            dependencies: ["MizanCore", "MizanStore"],
            swiftSettings: swiftSettings
        ),
        // The kit for embedders' tests and Mizan's own: a gateway in process, servers on loopback
        // ports, the mock provider, the statement budget (and MizanStoreTesting's clock and suite).
        .target(
            name: "MizanTesting",
            dependencies: [
                "MizanCore",
                "MizanStore",
                "MizanStoreTesting",
                "MizanDispatch",
                "MizanGateway",
                "MizanMockProvider",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanPostgresTesting",
            dependencies: [
                "MizanStorePostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanDispatch",
            dependencies: [
                "MizanStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                "MizanCore",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanProvider",
            dependencies: [
                "MizanCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanGateway",
            dependencies: [
                "MizanCore",
                "MizanStore",
                "MizanDispatch",
                "MizanProvider",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            resources: [
                .embedInCode("Resources/openapi.yaml")
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanConsole",
            dependencies: [
                "MizanCore",
                "MizanStore",
                "MizanDispatch",
                "MizanGateway",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [
                // The console's stylesheet and script, in the binary: nothing to install or fetch.
                .embedInCode("Resources/console/console.css"),
                .embedInCode("Resources/console/console.js"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanAgent",
            dependencies: [
                "MizanCore",
                "MizanProvider",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The examples (Examples/): built with the package, on its public API only.
        .executableTarget(
            name: "custom-agent",
            dependencies: [
                "MizanAgent", "MizanCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/custom-agent",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "multi-backend-agent",
            dependencies: [
                "MizanAgent",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/multi-backend-agent",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "embedded-dispatch",
            dependencies: [
                "MizanDispatch", "MizanStoreSQLite", "MizanCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/embedded-dispatch",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "mizan-agent",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                "MizanAgent",
                "MizanLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "MizanCore",
            ],
            path: "Sources/Executables/mizan-agent",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanLogging",
            dependencies: [
                "MizanCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanMockProvider",
            dependencies: [
                "MizanCore",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "mizan-mock-provider",
            dependencies: [
                "MizanMockProvider",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/mizan-mock-provider",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "mizan-gateway",
            dependencies: [
                "MizanGateway",
                "MizanConsole",
                "MizanLogging",
                "MizanStorePostgres",
                "MizanStoreSQLite",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "MizanCore",
                "MizanDispatch",
                "MizanStore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/Executables/mizan-gateway",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "mizan",
            dependencies: [
                "MizanCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/Executables/mizan",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "MizanLoad",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/MizanLoad",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "MizanStoreBenchmark",
            dependencies: [
                "MizanDispatch",
                "MizanStorePostgres",
                "MizanStoreSQLite",
                "MizanPostgresTesting",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                "MizanCore",
                "MizanStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/MizanStoreBenchmark",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MizanTestSupport",
            dependencies: [
                "MizanTesting",
                "MizanProvider",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/MizanTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanCoreTests",
            dependencies: ["MizanCore"],
            // What real local servers answer, read by the tests from the source tree.
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanStoreTests",
            dependencies: ["MizanCore", "MizanStore", "MizanStoreTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanStoreSQLiteTests",
            dependencies: [
                "MizanCore", "MizanStore", "MizanStoreSQLite", "MizanStoreTesting", "MizanTesting",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanDispatchTests",
            dependencies: [
                "MizanDispatch",
                "MizanStoreTesting",
                "MizanTestSupport",
                "MizanCore",
                "MizanStore",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanGatewayTests",
            dependencies: [
                "MizanGateway",
                "MizanConsole",
                "MizanStore",
                "MizanDispatch",
                "MizanMockProvider",
                "MizanProvider",
                "MizanLogging",
                "MizanTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                "MizanCore",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanAgentTests",
            dependencies: [
                "MizanAgent",
                "MizanCore",
                "MizanGateway",
                "MizanMockProvider",
                "MizanStore",
                "MizanTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanProviderTests",
            dependencies: [
                "MizanProvider",
                "MizanTestSupport",
                "MizanMockProvider",
                .product(name: "Hummingbird", package: "hummingbird"),
                "MizanCore",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanEndToEndTests",
            dependencies: [
                "MizanCore",
                "MizanProvider",
                "MizanPostgresTesting",
                "MizanTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MizanStorePostgresTests",
            dependencies: [
                "MizanTesting",
                "MizanDispatch",
                "MizanStorePostgres",
                "MizanStoreTesting",
                "MizanPostgresTesting",
                "MizanTestSupport",
                "MizanCore",
                "MizanStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
