// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Lifeline",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Lifeline", targets: ["Lifeline"]),
        .executable(name: "lifeline", targets: ["lifeline"]),
        .executable(name: "heat2d", targets: ["heat2d"]),
        .executable(name: "taskfarm", targets: ["taskfarm"]),
        .executable(name: "cg", targets: ["cg"]),
        .executable(name: "lifeline-bench", targets: ["lifeline-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // HMAC-SHA256 for the mutual handshake between hosts (BoringSSL's, on Linux).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        .systemLibrary(
            name: "CXXHash",
            pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Pure protocol state machines: the Swift standard library only.
        .target(name: "LifelineCore"),
        // The protocol core run with a virtual clock, network and disk (`lifeline simulate`).
        .target(name: "LifelineSimulation", dependencies: ["LifelineCore"]),
        // Every byte on disk: mirrored files, snapshots, the manifest.
        .target(name: "LifelineStorage", dependencies: ["CZstd", "CZlib", "CXXHash", "CLifelineSupport"]),
        // The few POSIX calls and macros Swift does not import (prctl, wait status, spawn actions).
        .target(name: "CLifelineSupport"),
        // The runtime: processes, sockets, timers; the public API of a program.
        .target(
            name: "Lifeline",
            dependencies: [
                "LifelineCore", "LifelineStorage", "CLifelineSupport", .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .executableTarget(
            name: "lifeline",
            dependencies: [
                "Lifeline",
                "LifelineCore",
                "LifelineStorage",
                "LifelineSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What the examples share (a SHA-256 to fingerprint their results).
        .target(name: "ExampleSupport", path: "Examples/Support"),
        .executableTarget(name: "heat2d", dependencies: ["Lifeline", "ExampleSupport"], path: "Examples/Heat2D"),
        .executableTarget(name: "taskfarm", dependencies: ["Lifeline", "ExampleSupport"], path: "Examples/TaskFarm"),
        .executableTarget(name: "ring", dependencies: ["Lifeline"], path: "Examples/Ring"),
        .executableTarget(name: "cg", dependencies: ["Lifeline", "ExampleSupport"], path: "Examples/CG"),
        // Benchmarks: the driver, the program it measures, and the raw baseline (no Lifeline).
        .executableTarget(
            name: "lifeline-bench", dependencies: ["LifelineStorage", "CLifelineSupport"],
            path: "Benchmarks/Sources/LifelineBench"),
        .executableTarget(name: "lifeline-pingpong", dependencies: ["Lifeline"], path: "Benchmarks/Sources/PingPong"),
        .executableTarget(name: "raw-pingpong", dependencies: ["CLifelineSupport"], path: "Benchmarks/Sources/RawPingPong"),
        .testTarget(name: "LifelineCoreTests", dependencies: ["LifelineCore"]),
        .testTarget(name: "LifelineStorageTests", dependencies: ["LifelineStorage"]),
        .testTarget(name: "LifelineSimulationTests", dependencies: ["LifelineSimulation", "LifelineCore"]),
        // Writes epochs until SIGKILLed, or hits a file size limit: the storage crash tests spawn it.
        .executableTarget(name: "lifeline-storage-crasher", dependencies: ["LifelineStorage"], path: "Tests/StorageCrasher"),
        // The patterns that once hung a job (huge send-then-receive, a request with START, a
        // deadlock): the liveness tests run it.
        .executableTarget(
            name: "lifeline-liveness", dependencies: ["Lifeline", "ExampleSupport"], path: "Tests/LivenessProbe"),
        .testTarget(
            name: "LifelineIntegrationTests",
            dependencies: ["Lifeline", "LifelineCore", "LifelineStorage"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
