// HashRing.owner(of:) for room JIDs, as every node asks it for each room input.
// One scaled iteration = one lookup.
import AllocationBenchmarkSupport
import Benchmark
import Cluster

/// Room JIDs as the keys are in the cluster (bare, lower case).
let roomKeys = (0..<1_000).map { "room-\($0)@conference.example.org" }

func ring(ofSize size: Int) -> HashRing {
    HashRing(nodes: (1...size).map { "conclave-node-\($0)" })
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = allocationBenchmarkConfiguration(maxDuration: .seconds(2), maxIterations: 10_000)

    for size in [3, 16] {
        let ring = ring(ofSize: size)
        Benchmark("HashRing.owner(of:), \(size) nodes, per lookup") { benchmark in
            for index in benchmark.scaledIterations {
                blackHole(ring.owner(of: roomKeys[index % roomKeys.count]))
            }
        }
    }
}
